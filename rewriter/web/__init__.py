"""The merchandiser dashboard (`/_affinity/ui/`) and the demo storefront (`/_affinity/shop/`)."""
