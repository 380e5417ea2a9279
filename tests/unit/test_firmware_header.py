"""model_info.h compiles warning-free as C99 and C++ and carries the manifest's values exactly."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from firmware_testlib import write_compile_dir, write_search_record

from nasc.firmware_bridge.header import c_string, render_header
from nasc.firmware_bridge.manifest import BundleManifest
from nasc.firmware_bridge.package import build_manifest_members
from nasc.firmware_bridge.settings import PackageSettings
from nasc.pipeline.package import bundle_source

C_PROGRAM = r"""
#include <stdio.h>
#include "model_info.h"

int main(void) {
  static const long long in_shape[] = NASC_INPUT0_SHAPE;
  static const long long out_shape[] = NASC_OUTPUT0_SHAPE;
  static const char *input_names[] = NASC_INPUT_NAMES;
  static const char *sample_files[] = NASC_INPUT_SAMPLE_FILES;
  static const float mean[] = NASC_PREPROCESS_MEAN;
  static const float std_[] = NASC_PREPROCESS_STD;
  static const char *class_names[] = NASC_CLASS_NAMES;
  int i;
  printf("name=%s\n", NASC_INPUT0_NAME);
  printf("names0=%s\n", input_names[0]);
  printf("model=%s\n", NASC_MODEL_NAME);
  printf("dtype=%s code=%d bits=%d layout=%s\n", NASC_INPUT0_DTYPE, NASC_INPUT0_DTYPE_CODE,
         NASC_INPUT0_DTYPE_BITS, NASC_INPUT0_LAYOUT);
  printf("in_shape=");
  for (i = 0; i < NASC_INPUT0_NDIM; ++i) printf("%lld,", in_shape[i]);
  printf("\nout_shape=");
  for (i = 0; i < NASC_OUTPUT0_NDIM; ++i) printf("%lld,", out_shape[i]);
  printf("\nsizes=%lld,%lld,%lld\n", (long long)NASC_INPUT0_NUM_ELEMENTS, (long long)NASC_INPUT0_SIZE_BYTES,
         (long long)NASC_OUTPUT0_SIZE_BYTES);
  printf("counts=%d,%d\n", NASC_NUM_INPUTS, NASC_NUM_OUTPUTS);
  printf("sample=%s\n", sample_files[0]);
  printf("library=%s triple=%s tvm=%s emulated=%d\n", NASC_LIBRARY_FILE, NASC_TARGET_TRIPLE, NASC_TVM_VERSION,
         NASC_DEVICE_EMULATED);
  printf("pre=%d,%d,%g,%d", NASC_PREPROCESS_RESIZE_HEIGHT, NASC_PREPROCESS_RESIZE_WIDTH,
         (double)NASC_PREPROCESS_SCALE, NASC_PREPROCESS_NUM_CHANNELS);
  for (i = 0; i < NASC_PREPROCESS_NUM_CHANNELS; ++i) printf(",%g/%g", (double)mean[i], (double)std_[i]);
  printf("\ntol=%g,%g\n", NASC_SAMPLE_ATOL, NASC_SAMPLE_RTOL);
  printf("classes=%d", NASC_NUM_CLASSES);
  for (i = 0; i < NASC_NUM_CLASSES; ++i) printf(",%s", class_names[i]);
  printf("\n");
  return (int)(sizeof mean + sizeof std_ + sizeof class_names) == 0;
}
"""


def _compilers() -> tuple[str, str]:
    gcc, gxx = shutil.which("gcc"), shutil.which("g++")
    assert gcc and gxx, "gcc and g++ are needed for this test: apt-get install -y gcc g++"
    return gcc, gxx


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> BundleManifest:
    folder = write_compile_dir(tmp_path_factory.mktemp("hdr") / "compiled", b"library")
    classes = ["zero", 'say "one"', *[f"class {i}" for i in range(2, 10)]]
    write_search_record(folder, preprocessing={"class_names": classes})
    settings = PackageSettings(preprocessing_mean=(0.485, 0.456, 0.406), preprocessing_std=(0.229, 0.224, 0.225),
                               preprocessing_resize=(224, 224), preprocessing_scale=1 / 255)
    return build_manifest_members(bundle_source(folder), settings)[0]


def _build_and_run(tmp_path: Path, header: str) -> dict[str, str]:
    gcc, gxx = _compilers()
    (tmp_path / "model_info.h").write_text(header)
    (tmp_path / "check.c").write_text(C_PROGRAM)
    (tmp_path / "check.cc").write_text(C_PROGRAM)
    results = []
    for compiler, flags, source in (
        (gcc, ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"], "check.c"),
        (gxx, ["-Wall", "-Wextra", "-Werror", "-pedantic"], "check.cc"),
    ):
        exe = tmp_path / (source + ".bin")
        built = subprocess.run([compiler, *flags, "-o", str(exe), source], cwd=tmp_path, capture_output=True, text=True)
        assert built.returncode == 0, f"{compiler} {' '.join(flags)} failed:\n{built.stderr}"
        ran = subprocess.run([str(exe)], capture_output=True, check=True)
        results.append(ran.stdout)
    assert results[0] == results[1], "C and C++ read the header differently"
    lines = results[0].decode("utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_header_compiles_cleanly_and_matches_the_manifest(manifest: BundleManifest, tmp_path: Path) -> None:
    values = _build_and_run(tmp_path, render_header(manifest))
    spec_in, spec_out = manifest.inputs[0], manifest.outputs[0]
    assert values["name"] == values["names0"] == spec_in.name
    assert values["model"] == manifest.name
    assert values["dtype"] == "float32 code=2 bits=32 layout=NCHW"
    assert values["in_shape"] == "".join(f"{d}," for d in spec_in.shape)
    assert values["out_shape"] == "".join(f"{d}," for d in spec_out.shape)
    assert values["sizes"] == f"{spec_in.num_elements},{spec_in.num_elements * 4},{spec_out.num_elements * 4}"
    assert values["counts"] == "1,1"
    assert values["sample"] == manifest.sample.inputs[0]
    assert values["library"] == f"model.so triple=x86_64-linux-gnu tvm={manifest.versions['tvm']} emulated=0"
    assert values["pre"] == "224,224,0.00392157,3,0.485/0.229,0.456/0.224,0.406/0.225"
    assert values["tol"] == f"{manifest.sample.atol:g},{manifest.sample.rtol:g}"
    assert values["classes"] == "10," + ",".join(manifest.preprocessing.class_names)
    assert manifest.preprocessing.class_names[1] == 'say "one"'


def test_header_without_classes_or_preprocessing_still_compiles(manifest: BundleManifest, tmp_path: Path) -> None:
    bare = dataclasses.replace(manifest, preprocessing=type(manifest.preprocessing)())
    values = _build_and_run(tmp_path, render_header(bare))
    assert values["classes"] == "0" and values["pre"] == "0,0,1,0"


@pytest.mark.parametrize("name", ['in"put\\0', "x*/ y /* z", "??=trigraph", "ünïcode-输入", "new\nline\ttab"])
def test_awkward_names_survive_as_exact_c_strings(manifest: BundleManifest, tmp_path: Path, name: str) -> None:
    renamed = dataclasses.replace(manifest, inputs=(dataclasses.replace(manifest.inputs[0], name=name),))
    header = render_header(renamed)
    assert name not in header or (name.isascii() and name.isprintable() and "?" not in name)
    if "\n" in name:
        gcc, _ = _compilers()
        (tmp_path / "model_info.h").write_text(header)
        (tmp_path / "t.c").write_text('#include <stdio.h>\n#include "model_info.h"\n'
                                      'int main(void) { fputs(NASC_INPUT0_NAME, stdout); return 0; }\n')
        subprocess.run([gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", "t", "t.c"], cwd=tmp_path, check=True)
        assert subprocess.run([str(tmp_path / "t")], capture_output=True, check=True).stdout == name.encode()
    else:
        assert _build_and_run(tmp_path, header)["name"] == name


def test_c_string_escapes() -> None:
    assert c_string('a"b\\c') == '"a\\"b\\\\c"'
    assert c_string("é") == '"\\303\\251"'
    assert c_string("?") == '"\\077"'


def test_header_has_no_values_that_are_not_in_the_manifest(manifest: BundleManifest) -> None:
    data = json.loads(manifest.to_json())
    header = render_header(BundleManifest.from_dict(data))
    assert header == render_header(manifest)
    assert header.count("#define NASC_INPUT0_") == 9 and "NASC_INPUT1_" not in header
