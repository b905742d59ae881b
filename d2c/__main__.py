from d2c.cli import main

main()
