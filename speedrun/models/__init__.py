"""The networks: Page's ResNet-9 (:mod:`~speedrun.models.resnet9`) and fast94's airbench-style net
with its data-dependent whitening stem (:mod:`~speedrun.models.fast_net`,
:mod:`~speedrun.models.whitening`). A model config is data that builds, initializes and groups
a network's parameters (:class:`~speedrun.models.protocol.ModelConfig`)."""
