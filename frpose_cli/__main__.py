from frpose_cli.cli.app import main

main()
