"""Label maps (datasets/_labels.py): the VOC palette, P/L files read by index, RGB files decoded by colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.contracts.dataset import DatasetError
from datasets._labels import palette_decoder, read_label_map, voc_palette

LABELS = np.array([[0, 1, 2, 3], [4, 11, 255, 0], [7, 8, 9, 10]], np.uint8)


def _p_png(path: Path, labels: np.ndarray, palette: np.ndarray | None = None) -> Path:
    im = Image.fromarray(labels)
    im.putpalette((voc_palette() if palette is None else palette).reshape(-1).tolist())
    im.save(path)
    return path


def test_voc_palette_known_colours() -> None:
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    known = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128]]
    assert pal[:7].tolist() == known
    assert pal[7].tolist() == [128, 128, 128] and pal[8].tolist() == [64, 0, 0] and pal[9].tolist() == [192, 0, 0]
    assert pal[255].tolist() == [224, 224, 192]  # the VOC "void" colour
    assert len({tuple(c) for c in pal.tolist()}) == 256  # one colour per index: decoding is unambiguous
    assert voc_palette(12).tolist() == pal[:12].tolist()


def test_palette_png_is_read_by_index_not_colour(tmp_path: Path) -> None:
    # a palette that colours every index white: the index must still be the label
    path = _p_png(tmp_path / "p.png", LABELS, np.full((256, 3), 255, np.uint8))
    assert Image.open(path).mode == "P"
    out = read_label_map(path)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, LABELS)
    np.testing.assert_array_equal(palette_decoder(12, 255)(path), LABELS)


def test_grayscale_png_is_read_by_value(tmp_path: Path) -> None:
    Image.fromarray(LABELS).save(tmp_path / "l.png")
    assert Image.open(tmp_path / "l.png").mode == "L"
    np.testing.assert_array_equal(read_label_map(tmp_path / "l.png"), LABELS)


def test_read_label_map_refuses_rgb_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "colour.png"
    Image.fromarray(voc_palette()[LABELS]).save(path)
    with pytest.raises(DatasetError, match=r"colour\.png: a label map must be a palette \(P\) or grayscale") as err:
        read_label_map(path)
    assert "mode RGB" in str(err.value)


def test_rgb_coloured_with_the_palette_decodes_to_indices(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.fromarray(voc_palette()[LABELS]).save(path)
    np.testing.assert_array_equal(palette_decoder(12, 255)(path), LABELS)
    rgba = np.concatenate([voc_palette()[LABELS], np.full(LABELS.shape + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(palette_decoder(12, 255)(tmp_path / "rgba.png"), LABELS)


def test_grey_saved_as_rgb_is_read_by_value(tmp_path: Path) -> None:
    grey = np.array([[0, 1, 2], [255, 3, 0]], np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(palette_decoder(5, 255)(tmp_path / "grey.png"), grey)


def test_unknown_colour_names_the_file_and_colour(tmp_path: Path) -> None:
    rgb = voc_palette()[LABELS].copy()
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(DatasetError, match=r"odd\.png: unknown colour RGB\(1, 2, 3\)"):
        palette_decoder(12, 255)(tmp_path / "odd.png")
    # the colour of class 11 is not a class of a 5-class dataset
    with pytest.raises(DatasetError, match=r"rgb5\.png: unknown colour RGB\(192, 128, 0\)"):
        Image.fromarray(voc_palette()[np.array([[0, 11]], np.uint8)]).save(tmp_path / "rgb5.png")
        palette_decoder(5, 255)(tmp_path / "rgb5.png")


def test_missing_and_broken_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"absent\.png: file not found"):
        read_label_map(tmp_path / "absent.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"broken\.png: unreadable"):
        palette_decoder(12, 255)(tmp_path / "broken.png")
