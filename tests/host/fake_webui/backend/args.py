dynamic_args = {"embedding_dir": None, "emphasis_name": "Original", "forge_unet_storage_dtype": None}
