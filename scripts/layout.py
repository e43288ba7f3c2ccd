"""The code layout's two readings of lld's map (scripts/layout.sh runs them):

    layout.py coverage ORDER MAP          prints `FOUND LISTED`: how many of ORDER's names MAP's .text holds
    layout.py order MAP CALLGRIND OUT     writes OUT: the functions callgrind saw run, by mangled name
"""

import bisect
import re
import sys

LINE = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s(.*)$")
# An input section of one function: `obj.o:(.text.NAME)`, with the prefix LLVM gives cold or hot code.
FUNCTION = re.compile(r":\(\.text\.(?:(?:unlikely|hot|startup|exit|split)\.)?(.+)\)$")


def text_sections(map_file):
    """The .text input sections of lld's map: (address, size, mangled name or None), by address."""
    sections, in_text = [], False
    for line in open(map_file, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        rest = m.group(3)
        if not rest.startswith(" "):
            in_text = rest.strip() == ".text"
            continue
        if in_text and not rest.startswith(" " * 16):
            name = FUNCTION.search(rest.rstrip())
            sections.append((int(m.group(1), 16), int(m.group(2), 16), name.group(1) if name else None))
    sections.sort()
    return sections


def coverage(order_file, map_file):
    listed = {line.strip() for line in open(order_file) if line.strip()}
    found = {name for _, _, name in text_sections(map_file) if name in listed}
    print(len(found), len(listed))


def order(map_file, profile, out):
    sections = text_sections(map_file)
    starts = [s[0] for s in sections]
    # Instruction addresses callgrind saw run in the keyway binary, in the order the profile lists them.
    names, listed, seen, size, ob = [], set(), set(), 0, None
    addr_re = re.compile(r"^(?:fn=|calls=\d+ )?(0x[0-9a-f]+)")
    for line in open(profile, errors="replace"):
        if line.startswith("ob="):
            ob = line[3:].strip()
            continue
        if not ob or not ob.endswith("/keyway"):
            continue
        m = addr_re.match(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or i in seen or addr >= sections[i][0] + max(sections[i][1], 1):
            continue
        seen.add(i)
        name = sections[i][2]
        if name and name not in listed:
            listed.add(name)
            names.append(name)
            size += sections[i][1]
    if len(names) < 1000:
        sys.exit(f"error: only {len(names)} functions seen running; the profile is incomplete")
    with open(out, "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"{out}: {len(names)} functions ({size / 1e6:.2f} MB of code) of the {len(sections)} in .text")


if __name__ == "__main__":
    {"coverage": coverage, "order": order}[sys.argv[1]](*sys.argv[2:])
