"""Loading CIFAR-10 from its layouts: which copy a dataset is comes from its content."""


def test_the_jpeg_copy_in_the_official_layout_is_still_named_the_jpeg_copy(real_cifar10, tmp_path):
    """Identity comes from content: the copy repacked as the official pickles is not the real CIFAR-10."""
    import pickle

    import numpy as np

    from speedrun.data.cifar10 import SOURCE_JPEG_COPY
    from speedrun.data.loading import load_cifar10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    def rows(images):                       # (N, 32, 32, 3) -> the pickles' (N, 3072) channel planes
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)

    train_images, train_labels = real_cifar10.train_images, real_cifar10.train_labels
    for i in range(5):
        part = slice(i * 10000, (i + 1) * 10000)
        batch = {b"data": rows(train_images[part]), b"labels": [int(v) for v in train_labels[part]]}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"data": rows(real_cifar10.test_images), b"labels": [int(v) for v in real_cifar10.test_labels]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    repacked = load_cifar10(tmp_path, download=False)
    assert repacked.source == SOURCE_JPEG_COPY
    assert repacked.checksums() == real_cifar10.checksums()
