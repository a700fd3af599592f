"""Running ``reconcile`` from CI systems. Standard library only: nothing here imports clearml."""
