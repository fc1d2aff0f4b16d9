#!/usr/bin/python3
"""What the mkosi tier reads from its disk and its UKI, on the host.

    efi-tool.py partition DISK esp|root   byte offset and size of the first
                                          partition of that GPT type
    efi-tool.py esp-file DISK PATH OUT    copy file PATH (8.3 names, e.g.
                                          /EFI/BOOT/BOOTX64.EFI) out of the
                                          disk's ESP (FAT16/32, any sector
                                          size: mtools 4.0.32 misreads the
                                          4096-byte sectors systemd-repart
                                          formats with)
    efi-tool.py cmdline UKI               the UKI's .cmdline section
    efi-tool.py initrd-files UKI          the paths in the UKI's .initrd (its
                                          cpio archives, zstd or not)
    efi-tool.py swap-cmdline UKI OUT OLD NEW
                                          OUT = UKI with OLD replaced by NEW
                                          (same length) in .cmdline, nothing
                                          else changed: the signature is not
                                          redone, so it no longer matches

Run with the host's /usr/bin/python3 and python3-pefile.
"""

import shutil
import struct
import subprocess
import sys
import uuid

import pefile

GPT_TYPES = {
    "esp": uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    "root": uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),  # x86-64 root
}
SECTOR = 512


def partition(disk, kind):
    with open(disk, "rb") as f:
        print(*find_partition(f, kind))


def find_partition(f, kind):
    f.seek(SECTOR)
    header = f.read(92)
    if header[:8] != b"EFI PART":
        sys.exit("no GPT header")
    entries_lba, count, size = struct.unpack_from("<QII", header, 72)
    f.seek(entries_lba * SECTOR)
    table = f.read(count * size)
    for i in range(count):
        entry = table[i * size:(i + 1) * size]
        if uuid.UUID(bytes_le=entry[:16]) == GPT_TYPES[kind]:
            first, last = struct.unpack_from("<QQ", entry, 32)
            return first * SECTOR, (last - first + 1) * SECTOR
    sys.exit(f"no {kind} partition")


def esp_file(disk, path, out):
    with open(disk, "rb") as f:
        base, _ = find_partition(f, "esp")
        f.seek(base)
        bs = f.read(512)
        sector, per_cluster, reserved, fats, root_entries = struct.unpack_from("<HBHBH", bs, 11)
        fat_size = struct.unpack_from("<H", bs, 22)[0] or struct.unpack_from("<I", bs, 36)[0]
        fat32 = root_entries == 0
        fat_start = base + reserved * sector
        root_start = fat_start + fats * fat_size * sector
        data_start = root_start + (root_entries * 32 + sector - 1) // sector * sector
        cluster_bytes = sector * per_cluster
        f.seek(fat_start)
        fat = f.read(fat_size * sector)

        def chain(cluster):
            while 2 <= cluster < (0x0FFFFFF8 if fat32 else 0xFFF8):
                f.seek(data_start + (cluster - 2) * cluster_bytes)
                yield f.read(cluster_bytes)
                if fat32:
                    cluster = struct.unpack_from("<I", fat, cluster * 4)[0] & 0x0FFFFFFF
                else:
                    cluster = struct.unpack_from("<H", fat, cluster * 2)[0]

        if fat32:
            directory = b"".join(chain(struct.unpack_from("<I", bs, 44)[0]))
        else:
            f.seek(root_start)
            directory = f.read(root_entries * 32)
        parts = [p for p in path.strip("/").split("/") if p]
        for n, part in enumerate(parts):
            stem, _, ext = part.upper().partition(".")
            want = stem.ljust(8).encode() + ext.ljust(3).encode()
            for i in range(0, len(directory), 32):
                e = directory[i:i + 32]
                if e[0] == 0:
                    break
                if e[0] == 0xE5 or e[11] == 0x0F or e[:11] != want:
                    continue
                first = struct.unpack_from("<H", e, 20)[0] << 16 | struct.unpack_from("<H", e, 26)[0]
                size = struct.unpack_from("<I", e, 28)[0]
                data = b"".join(chain(first))
                break
            else:
                sys.exit(f"{path}: {part} not found on the ESP")
            if n < len(parts) - 1:
                directory = data
            else:
                with open(out, "wb") as o:
                    o.write(data[:size])


def cmdline_section(pe):
    for s in pe.sections:
        if s.Name.rstrip(b"\0") == b".cmdline":
            return s
    sys.exit("no .cmdline section")


def cmdline(uki):
    pe = pefile.PE(uki, fast_load=True)
    s = cmdline_section(pe)
    data = s.get_data()[: s.Misc_VirtualSize]
    print(data.rstrip(b"\0").decode().strip())


def section_data(uki, name):
    pe = pefile.PE(uki, fast_load=True)
    for s in pe.sections:
        if s.Name.rstrip(b"\0") == name:
            return s.get_data()[: s.Misc_VirtualSize]
    sys.exit(f"no {name.decode()} section")


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def zstd_frame_end(data, pos):
    """End of the zstd frame at pos, from its header and block headers."""
    fhd = data[pos + 4]
    single = fhd >> 5 & 1
    pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
    pos += (1 if single else 0, 2, 4, 8)[fhd >> 6]
    while True:
        header = int.from_bytes(data[pos:pos + 3], "little")
        pos += 3 + (1 if (header >> 1) & 3 == 1 else header >> 3)
        if header & 1:
            return pos + (4 if fhd >> 2 & 1 else 0)


def cpio_names(data):
    """Names in concatenated newc archives at the start of data, and the rest."""
    names, pos = [], 0
    while True:
        while pos < len(data) and data[pos] == 0:
            pos += 1
        if data[pos:pos + 6] not in (b"070701", b"070702"):
            return names, data[pos:]
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode(errors="replace")
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
        if name != "TRAILER!!!":
            names.append(name)


def initrd_files(uki):
    """The kernel's view: archives one after the other, each uncompressed or
    a zstd frame (what mkosi writes), zero padding between them."""
    data = section_data(uki, b".initrd")
    while data:
        names, data = cpio_names(data)
        for n in names:
            print(n)
        if not data:
            break
        if not data.startswith(ZSTD_MAGIC):
            sys.exit(f"initrd: neither cpio nor zstd at {data[:8].hex()}")
        end = zstd_frame_end(data, 0)
        out = subprocess.run(["zstd", "-dcq"], input=data[:end], stdout=subprocess.PIPE,
                             check=True).stdout
        names, rest = cpio_names(out)
        if rest.strip(b"\0"):
            sys.exit("initrd: trailing data in a compressed archive")
        for n in names:
            print(n)
        data = data[end:]


def swap_cmdline(uki, out, old, new):
    if len(old) != len(new):
        sys.exit("OLD and NEW must have the same length")
    pe = pefile.PE(uki, fast_load=True)
    s = cmdline_section(pe)
    start, length = s.PointerToRawData, s.SizeOfRawData
    shutil.copyfile(uki, out)
    with open(out, "r+b") as f:
        f.seek(start)
        data = f.read(length)
        if data.count(old.encode()) != 1:
            sys.exit(f"{old} is not in .cmdline exactly once")
        f.seek(start)
        f.write(data.replace(old.encode(), new.encode()))


def main(argv):
    if len(argv) == 3 and argv[0] == "partition":
        partition(argv[1], argv[2])
    elif len(argv) == 4 and argv[0] == "esp-file":
        esp_file(*argv[1:])
    elif len(argv) == 2 and argv[0] == "initrd-files":
        initrd_files(argv[1])
    elif len(argv) == 2 and argv[0] == "cmdline":
        cmdline(argv[1])
    elif len(argv) == 5 and argv[0] == "swap-cmdline":
        swap_cmdline(*argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
