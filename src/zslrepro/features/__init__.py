"""Feature maps: a truncated torchvision ResNet, and the HDF5 feature store it fills."""
