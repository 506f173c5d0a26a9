"""Tensors are named as people think of them, in the CLI, the JSON and the HTML report."""
import json

import pytest

import memsim
import models_zoo
from memsim.core.categories import Category
from memsim.core.names import tensor_label
from memsim.output import html_report


@pytest.fixture(scope="module")
def resnet18():
    spec = models_zoo.spec("resnet18")
    return memsim.trace(models_zoo.create("resnet18", device="meta"), spec.example_inputs(2, device="meta"),
                        loss_fn=spec.loss_fn, optimizer="adam")


def _labels(trace, category):
    return {tensor_label(t, trace) for t in trace.timeline.tensors if t.category == category}


def test_activations_say_who_made_and_who_saves_them(resnet18):
    acts = _labels(resnet18, Category.ACTIVATION)
    assert "layer1.0.conv1 output, saved by bn1" in acts
    assert "maxpool indices, saved by itself" in acts
    assert "layer1.0.bn1 batch mean, saved by itself" in acts
    assert not any("aten." in a for a in acts)


def test_state_gradients_and_scratch_read_as_words(resnet18):
    assert "fc.weight Adam first moment" in _labels(resnet18, Category.OPTIMIZER_STATE)
    assert "fc.weight gradient" in _labels(resnet18, Category.GRADIENT)
    assert "conv1 convolution scratch (backward)" in _labels(resnet18, Category.WORKSPACE)
    assert "input[0] (the batch)" in _labels(resnet18, Category.INPUT)


def test_json_and_html_carry_the_labels(resnet18, tmp_path):
    rep = memsim.simulate(resnet18, device="jetson-nano", policy="none")
    top = rep.to_dict()["top_tensors"]
    assert all(t["label"] and "aten." not in t["label"] for t in top)
    assert {"name", "module", "category", "shape", "dtype", "bytes"} <= set(top[0])   # the old fields stay
    json.dumps(top)
    page = html_report.render_html(rep, include_graph=False)
    table = page[page.index('id="top-tensors"'):]
    assert top[0]["label"] in table and "<td>—</td>" not in table.split("</table>")[0]
