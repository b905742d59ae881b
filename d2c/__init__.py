"""d2c — Desktop to Cloud: move an already-parallel app from desktop VMs to Amazon EC2."""

__version__ = "0.1.0"
