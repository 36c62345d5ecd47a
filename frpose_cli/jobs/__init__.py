"""The job layer every long verb shares: a run split into shards (``shards``: torchrun ranks or
``--shard i/n``, "the last one merges", the merge lock) and one progress bar per run
(``progress``: rank 0 shows every rank's count).  Run folders: :mod:`frpose_cli.run_folders`."""
