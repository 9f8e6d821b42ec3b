"""Training one run with several processes (DDP): launcher (torchrun, processes, stop), transport, world, worker.
Part of core.train: may import what train may; loop.py imports only world from here.
"""
