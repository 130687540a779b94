"""Neural networks: the segmentor U-Net (and later the flow generator) and their weights."""
