from signal_svc.server import main

main()
