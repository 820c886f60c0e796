from devserver.cli import main

main()
