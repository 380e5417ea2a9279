from nasc.cli import main

main()
