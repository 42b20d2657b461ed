from pipeline.importers.penn_action import import_penn_action


def test_penn_action_official_split(shared_data):
    ds = import_penn_action(shared_data / "penn_action" / "labels", progress=False)
    assert len(ds.clips) == 2326
    assert len(ds.split["train"]) == 1258 and len(ds.split["test"]) == 1068
    assert ds.num_classes == 15
