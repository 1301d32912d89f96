"""Check the bundle structure vectors with the device-side reader.

Runs under CPython and the MicroPython unix port (tests/test_structure.py starts
both); prints one line per failure and a closing 'N passed, M failed'.

    micropython tests/device/structure_vector_runner.py tests/vectors
"""

import binascii
import io
import json
import sys

from gridcast.protocol import bundle_reader, bundle_structure, reasons
from gridcast.protocol.errors import ProtocolError

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def run(v):
    keys = {v["key_id"]: binascii.unhexlify(v["key_hex"])}
    expect = v["expect"]
    for case in v["cases"]:
        data = binascii.unhexlify(case["hex"])
        try:
            info = bundle_reader.verify(io.BytesIO(data), len(data), keys, v["fw_version"])
            code = reasons.OK
        except ProtocolError as e:
            info, code = None, e.code
        check(case["name"], code == case["reason"], "reason %s, expected %s"
              % (reasons.name(code), reasons.name(case["reason"])))
        if info is None:
            continue
        check(case["name"] + ": counts", info.section_count == case["sections"] and
              info.phrase_count == case["phrases"],
              "%d sections, %d phrases" % (info.section_count, info.phrase_count))
        f = io.BytesIO(data)
        if case["sections"]:
            got = [list(bundle_structure.read_section(f, info, i))
                   for i in range(info.section_count)]
            check(case["name"] + ": sections", got == expect["sections"], repr(got))
            cursor = bundle_structure.SectionCursor(f, info)
            for t, want in expect["cursor"]:
                at = cursor.at(t)
                got_at = None if at is None else [at[0], at[1]]
                check("%s: section at %d us" % (case["name"], t), got_at == want, repr(got_at))
        else:
            cursor = bundle_structure.SectionCursor(f, info)
            check(case["name"] + ": no section", cursor.at(1000000) is None)
        if case["phrases"]:
            got = [bundle_structure.read_phrase_us(f, info, i) for i in range(info.phrase_count)]
            check(case["name"] + ": phrases", got == expect["phrases_us"], repr(got))


def main(folder):
    with open(folder + "/structure.json") as f:
        run(json.load(f))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
