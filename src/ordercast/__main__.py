from ordercast.cli import main

main()
