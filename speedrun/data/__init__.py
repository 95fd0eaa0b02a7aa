"""CIFAR-10 as checked uint8 arrays (:mod:`~speedrun.data.cifar10`), on the device
(:mod:`~speedrun.data.device_data`), and the batched crop/flip/cutout that runs there
(:mod:`~speedrun.data.augment`, :mod:`~speedrun.data.fused_input`)."""
