"""Files -> labels -> datasets. Nothing here imports Lightning except `datamodule`."""
