from anomalyvae.cli.main import main

main()
