"""The precision decision: which number format runs where (``formats``), ``--precision auto``
(``autoselect``), the accuracy gate (``gate``) on real person crops (``crops``), and the cache of
what was gated (``cache``); ``runnable.runnable_model`` is the one call that applies it."""
