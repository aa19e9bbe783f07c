from shadowline.cli.main import main

main()
