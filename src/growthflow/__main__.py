from growthflow.cli import main

main()
