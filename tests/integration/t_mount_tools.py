#!/usr/bin/python3
"""t_mount_tools.py - common tools and write patterns through `s3jobfs mount` (s3rver).

Every case works in a job folder of an upload-on-close mount (S3_UPLOAD_ON_COMPLETION=false,
S3JOBFS_SETTLE_MS=100) unless it says otherwise, reads the result back through the mount at
once, then fsync()s the job directory and checks S3: every local file is an object with the
same bytes right after fsync() returns, and (allowing a few seconds for deletes of renamed
temp files) no other object is under the job's prefix.

  cp_r, tar_x, rsync_a    a tree copied in by cp -r, tar x, rsync -a (mode and mtime kept)
  special_names           names with spaces, unicode, + % & = ~ # ; ? and a long name
  sed_i                   sed -i of an uploaded file (temp file + rename by sed)
  replace                 write-to-temp then os.replace() over an uploaded file
  truncate                shrink, grow (zeros), O_TRUNC rewrite of an uploaded file
  append                  O_APPEND to an uploaded file
  overwrite_middle        pwrite in the middle of an uploaded file
  sparse                  seek 10 MiB past the end, write
  concurrent_writers      8 threads x 25 files, small interleaved writes
  two_fds                 two fds on one file: coherent reads, no upload until the last close
  slow_writer             a file written with pauses longer than the settle time is not
                          uploaded while open; after close, whole
  big_multipart           a 100 MiB file with S3_MULTIPART_THRESHOLD=16MiB
  chmod_utimens           chmod + utimens before upload: stat and x-amz-meta-mode/-mtime
  chmod_after_upload      chmod + utimens of an uploaded file reach the object's metadata
  symlink                 symlink, readlink, lstat, read through the link
  mkdir_rmdir             mkdir -p, rmdir, ENOTEMPTY, ENOENT
  unlink_uploaded         rm of an uploaded file deletes the object; it does not come back
  rename_uploaded         rename of an uploaded file moves the object (also to another dir)
  rename_after_unlink     unlink of an uploaded file, then at once rename of another one
  rename_before_upload    rename of a file not yet uploaded: only the new key ever appears
  delete_before_upload    (on-completion mount) write, delete, complete: never uploaded
"""
import decimal
import errno
import io
import os
import random
import stat
import subprocess
import sys
import tarfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib as ml  # noqa: E402

T = ml.Suite("t_mount_tools")
MiB, KiB = ml.MiB, ml.KiB


def start(ctx, on_completion=False, env=None):
    """Mount and make a job folder; (mount, job name, job dir through the mount)."""
    m = ctx.mount(on_completion=on_completion, env=env)
    job = ml.job_name()
    d = os.path.join(m.mnt, job)
    os.mkdir(d)
    return m, job, d


def synced(ctx, job, d, settle=30):
    """fsync(job dir); then every local file under it is in S3 now, and only those soon."""
    local = ml.tree_files(d)
    ctx.step("fsync of the job directory")
    ml.fsync_dir(d)
    ctx.step("comparing S3 with the local tree")
    exp = ml.digest_map(local)
    ml.check_s3(ctx.s3, ctx.prefix + job + "/", exp, exact=False,
                what="objects right after fsync() of the job directory returned")
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", exp, timeout=settle,
               what="objects of the job (no others allowed)")
    return local


def finish(ctx, m):
    ctx.step("umount")
    m.umount()


def make_tree(rng, root=None):
    """{rel: bytes}: a small tree (nested dirs, empty file, 3 MiB file); written under root."""
    files = {"README.txt": b"hello\n", "empty": b"",
             "big/three_mib.bin": rng.randbytes(3 * MiB)}
    for i in range(40):
        files["d%d/e%d/f%02d.dat" % (i % 3, i % 5, i)] = rng.randbytes(rng.randint(1, 200 * KiB))
    if root:
        for rel, data in files.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
    return files


def run(argv, timeout=120, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    ml.check(r.returncode == 0, "'%s' exited %d: %s" % (" ".join(argv), r.returncode,
                                                       r.stdout.decode(errors="replace")[-500:]))
    return r


def put_uploaded(ctx, d, rel, data):
    """Write d/rel and fsync it: returns when the object is in S3."""
    p = os.path.join(d, rel)
    ml.write_file(p, data)
    try:
        ml.fsync_path(p)
    except OSError as e:
        ml.fail("fsync(%s) failed: %s" % (p, ml.errname(e)))
    return p


def meta_of(ctx, key):
    h = ctx.s3.head(key)
    ml.check(h.status == 200, "HEAD %s: %d" % (key, h.status))
    return h


def mtime_ns(h):
    v = h.header("x-amz-meta-mtime")
    ml.check(v is not None, "no x-amz-meta-mtime on the object")
    return int(decimal.Decimal(v) * 10 ** 9)


def mode_of(h):
    v = h.header("x-amz-meta-mode")
    ml.check(v is not None, "no x-amz-meta-mode on the object")
    return int(v, 8) & 0o7777


@T.case("cp_r", timeout=120)
def cp_r(ctx):
    src = os.path.join(ctx.tmp, "src")
    files = make_tree(random.Random(10), src)
    m, job, d = start(ctx)
    ctx.step("cp -r")
    run(["cp", "-r", src, os.path.join(d, "copy")])
    ml.check_tree(os.path.join(d, "copy"), files, "cp -r result")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("tar_x", timeout=120)
def tar_x(ctx):
    rng = random.Random(11)
    files = make_tree(rng)
    arch = os.path.join(ctx.tmp, "a.tar")
    with tarfile.open(arch, "w") as tf:
        for rel, data in sorted(files.items()):
            ti = tarfile.TarInfo("t/" + rel)
            ti.size, ti.mode, ti.mtime = len(data), 0o640, 1600000000 + len(rel)
            tf.addfile(ti, io.BytesIO(data))
    m, job, d = start(ctx)
    ctx.step("tar x")
    run(["tar", "xf", arch, "-C", d])
    ml.check_tree(os.path.join(d, "t"), files, "tar x result")
    synced(ctx, job, d)
    with ctx.soft("metadata"):
        h = meta_of(ctx, ctx.prefix + job + "/t/README.txt")
        ml.check_eq(mode_of(h), 0o640, "x-amz-meta-mode of t/README.txt (from the tar header)")
        ml.check_eq(mtime_ns(h), (1600000000 + len("README.txt")) * 10 ** 9,
                    "x-amz-meta-mtime of t/README.txt in ns (from the tar header)")
    finish(ctx, m)


@T.case("rsync_a", timeout=120)
def rsync_a(ctx):
    src = os.path.join(ctx.tmp, "src")
    files = make_tree(random.Random(12), src)
    os.chmod(os.path.join(src, "README.txt"), 0o604)
    os.utime(os.path.join(src, "README.txt"), ns=(1500000000 * 10 ** 9, 1500000000 * 10 ** 9 + 5))
    m, job, d = start(ctx)
    ctx.step("rsync -a")
    run(["rsync", "-a", src + "/", os.path.join(d, "rs") + "/"])
    ml.check_tree(os.path.join(d, "rs"), files, "rsync -a result")
    st = os.stat(os.path.join(d, "rs", "README.txt"))
    ml.check_eq(oct(st.st_mode & 0o7777), oct(0o604), "mode of rs/README.txt through the mount")
    ml.check_eq(st.st_mtime_ns // 10 ** 9, 1500000000, "mtime (s) of rs/README.txt through the mount")
    synced(ctx, job, d)
    with ctx.soft("metadata"):
        h = meta_of(ctx, ctx.prefix + job + "/rs/README.txt")
        ml.check_eq(oct(mode_of(h)), oct(0o604), "x-amz-meta-mode of rs/README.txt")
        ml.check_eq(mtime_ns(h), st.st_mtime_ns, "x-amz-meta-mtime (ns) of rs/README.txt vs stat")
    finish(ctx, m)


@T.case("special_names", timeout=90)
def special_names(ctx):
    names = ["with space.txt", "caf\u00e9 \u65e5\u672c.json", "plus+sign.txt", "pct%20sign.txt",
             "amp&eq=.txt", "tilde~.txt", "hash#semi;q?.txt", "dir with space/x y.txt",
             "quote'd\".txt", "n" * 200 + ".txt"]
    m, job, d = start(ctx)
    want = {}
    for i, n in enumerate(names):
        want[n] = ("%d %s\n" % (i, n)).encode()
        ml.write_file(os.path.join(d, n), want[n])
    ml.check_tree(d, want, "files with special names")
    synced(ctx, job, d)
    ml.check_eq(sorted(os.listdir(d)), sorted(set(n.split("/")[0] for n in names)), "listdir of the job")
    finish(ctx, m)


@T.case("sed_i", timeout=60)
def sed_i(ctx):
    m, job, d = start(ctx)
    text = "".join("line %d foo\n" % i for i in range(2000)).encode()
    p = put_uploaded(ctx, d, "notes.txt", text)
    ctx.step("sed -i")
    run(["sed", "-i", "s/foo/barbaz/", p])
    ml.check_eq(ml.sha(ml.read_file(p)), ml.sha(text.replace(b"foo", b"barbaz")),
                "sha256 of notes.txt after sed -i")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("replace", timeout=60)
def replace(ctx):
    m, job, d = start(ctx)
    p = put_uploaded(ctx, d, "data.json", b'{"v": 1}')
    tmp = os.path.join(d, ".data.json.tmp")
    ml.write_file(tmp, b'{"v": 2, "more": "x"}')
    os.replace(tmp, p)
    ml.check_eq(ml.read_file(p), b'{"v": 2, "more": "x"}', "data.json after os.replace")
    ml.check(not os.path.exists(tmp), "%s still exists after os.replace" % tmp)
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("truncate", timeout=90)
def truncate(ctx):
    m, job, d = start(ctx)
    data = os.urandom(1 * MiB)
    p = put_uploaded(ctx, d, "t.bin", data)
    os.truncate(p, 100 * KiB)
    ml.check_eq(ml.read_file(p), data[:100 * KiB], "t.bin after truncate to 100 KiB")
    ml.check_eq(os.stat(p).st_size, 100 * KiB, "st_size after shrinking")
    synced(ctx, job, d)
    with open(p, "r+b") as f:
        f.truncate(3 * MiB)
    ml.check_eq(os.stat(p).st_size, 3 * MiB, "st_size after growing with ftruncate")
    ml.check(ml.read_file(p) == data[:100 * KiB] + bytes(3 * MiB - 100 * KiB),
             "t.bin after growing to 3 MiB is not the old 100 KiB followed by zeros")
    synced(ctx, job, d)
    with open(p, "wb") as f:            # O_TRUNC rewrite
        f.write(b"short")
    ml.check_eq(ml.read_file(p), b"short", "t.bin after O_TRUNC rewrite")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("append", timeout=60)
def append(ctx):
    m, job, d = start(ctx)
    p = put_uploaded(ctx, d, "log.txt", b"first\n")
    for i in range(50):
        with open(p, "ab") as f:
            f.write(b"line %d\n" % i)
    want = b"first\n" + b"".join(b"line %d\n" % i for i in range(50))
    ml.check_eq(ml.read_file(p), want, "log.txt after 50 appends")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("overwrite_middle", timeout=60)
def overwrite_middle(ctx):
    m, job, d = start(ctx)
    data = bytearray(os.urandom(2 * MiB))
    p = put_uploaded(ctx, d, "mid.bin", bytes(data))
    patch = os.urandom(70000)
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, patch, 1000000)
    finally:
        os.close(fd)
    data[1000000:1000000 + len(patch)] = patch
    ml.check(ml.read_file(p) == bytes(data), "mid.bin after pwrite at 1000000 differs")
    ml.check_eq(os.stat(p).st_size, 2 * MiB, "st_size after overwrite in the middle")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("sparse", timeout=60)
def sparse(ctx):
    m, job, d = start(ctx)
    p = os.path.join(d, "sparse.bin")
    with open(p, "wb") as f:
        f.write(b"head")
        f.seek(10 * MiB)
        f.write(b"tail")
    ml.check_eq(os.stat(p).st_size, 10 * MiB + 4, "st_size of the sparse file")
    ml.check(ml.read_file(p) == b"head" + bytes(10 * MiB - 4) + b"tail", "sparse file content differs")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("concurrent_writers", timeout=120)
def concurrent_writers(ctx):
    m, job, d = start(ctx)
    want, errors = {}, []

    def writer(t):
        rng = random.Random(t)
        try:
            files = []
            for i in range(25):
                data = rng.randbytes(rng.randint(1, 512 * KiB))
                rel = "w%d/f%02d.bin" % (t, i)
                want[rel] = data
                files.append((rel, data))
            os.makedirs(os.path.join(d, "w%d" % t), exist_ok=True)
            fs = [open(os.path.join(d, rel), "wb", buffering=0) for rel, _ in files[:5]]
            for off in range(0, 512 * KiB, 4096):      # five files open at once, interleaved
                for f, (rel, data) in zip(fs, files[:5]):
                    f.write(data[off:off + 4096])
            for f in fs:
                f.close()
            for rel, data in files[5:]:
                ml.write_file(os.path.join(d, rel), data, chunk=rng.choice([1000, 4096, 65536]))
        except Exception as e:
            errors.append("writer %d: %s" % (t, e))

    ths = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    ctx.step("8 writer threads")
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    ml.check(not errors, "; ".join(errors))
    ml.check_tree(d, want, "files of the concurrent writers")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("two_fds", timeout=60)
def two_fds(ctx):
    m, job, d = start(ctx)
    p = os.path.join(d, "shared.bin")
    a, b = os.urandom(300 * KiB), os.urandom(200 * KiB)
    fd1 = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    fd2 = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd1, a, 0)
        os.pwrite(fd2, b, 100 * KiB)
        want = a[:100 * KiB] + b
        ml.check_eq(ml.sha(os.pread(fd1, 1 * MiB, 0)), ml.sha(want), "sha256 read through fd1")
        os.close(fd1)
        fd1 = -1
        ctx.step("waiting with fd2 still open")
        time.sleep(1.5)         # 15 x settle: a file still open must not be uploaded
        key = ctx.prefix + job + "/shared.bin"
        ml.check(not ctx.s3.exists(key), "%s uploaded while fd2 was still open" % key)
        os.pwrite(fd2, b"END", len(want))
        want += b"END"
    finally:
        if fd1 >= 0:
            os.close(fd1)
        os.close(fd2)
    ml.check_eq(ml.sha(ml.read_file(p)), ml.sha(want), "sha256 of shared.bin after both closes")
    synced(ctx, job, d)
    finish(ctx, m)


@T.case("slow_writer", timeout=60)
def slow_writer(ctx):
    """A file written slowly (pauses of 3 x settle between writes) is not uploaded while it is
    open; after close it is, whole."""
    m, job, d = start(ctx)
    key = ctx.prefix + job + "/slow.json"
    chunks = [os.urandom(100 * KiB) for _ in range(8)]
    seen = []
    with open(os.path.join(d, "slow.json"), "wb", buffering=0) as f:
        for c in chunks:
            f.write(c)
            time.sleep(0.3)
            h = ctx.s3.head(key)
            if h.status == 200:
                seen.append(h.header("content-length"))
    ml.check(not seen, "%s was uploaded while still open for writing (sizes seen: %s)" % (key, seen))
    want = b"".join(chunks)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"slow.json": want}), timeout=10,
               what="objects after the slow writer closed")
    finish(ctx, m)


@T.case("big_multipart", timeout=240)
def big_multipart(ctx):
    m, job, d = start(ctx, env={"S3_MULTIPART_THRESHOLD": "16MiB"})
    data = os.urandom(100 * MiB)
    p = os.path.join(d, "big.bin")
    ctx.step("writing 100 MiB")
    t0 = time.monotonic()
    ml.write_file(p, data, chunk=1 * MiB)
    print("# wrote 100 MiB in %.1f s" % (time.monotonic() - t0))
    ctx.step("reading 100 MiB back")
    ml.check_eq(ml.sha(ml.read_file(p)), ml.sha(data), "sha256 of big.bin read back at once")
    t0 = time.monotonic()
    ctx.step("fsync of the job directory")
    ml.fsync_dir(d)
    print("# fsync of the dir took %.1f s" % (time.monotonic() - t0))
    key = ctx.prefix + job + "/big.bin"
    got = ctx.s3.get(key)
    ml.check(got is not None, "GET %s: 404 after fsync of the directory" % key)
    ml.check_eq(ml.sha(got), ml.sha(data), "sha256 of GET %s (%d bytes)" % (key, len(got)))
    finish(ctx, m)


@T.case("chmod_utimens", timeout=60)
def chmod_utimens(ctx):
    m, job, d = start(ctx, on_completion=True)
    p = os.path.join(d, "m.txt")
    ml.write_file(p, b"meta")
    os.chmod(p, 0o640)
    mt = 1700000000 * 10 ** 9 + 123456789
    os.utime(p, ns=(1700000001 * 10 ** 9, mt))
    st = os.stat(p)
    ml.check_eq(oct(st.st_mode & 0o7777), oct(0o640), "mode from stat after chmod 640")
    ml.check_eq(st.st_mtime_ns, mt, "st_mtime_ns after utimens")
    ml.check_eq(st.st_atime_ns, 1700000001 * 10 ** 9, "st_atime_ns after utimens")
    ml.fsync_dir(d)
    h = meta_of(ctx, ctx.prefix + job + "/m.txt")
    ml.check_eq(oct(mode_of(h)), oct(0o640), "x-amz-meta-mode")
    ml.check_eq(h.header("x-amz-meta-mtime"), "1700000000.123456789", "x-amz-meta-mtime")
    finish(ctx, m)


@T.case("owner_only_staging", timeout=90)
def owner_only_staging(ctx):
    """Staged files are 0600 and staged dirs 0700 in the cache whatever their mode; programs see
    (and S3's x-amz-meta-mode gets) the mode they asked for, also after a remount."""
    m, job, d = start(ctx, on_completion=True)
    old = os.umask(0o022)
    try:
        os.makedirs(os.path.join(d, "pub"), mode=0o755)
        fd = os.open(os.path.join(d, "pub", "a.json"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"{}")
        os.close(fd)
        ml.write_file(os.path.join(d, "b.txt"), b"b")
        os.chmod(os.path.join(d, "b.txt"), 0o751)
        os.mkdir(os.path.join(d, "priv"), 0o750)
    finally:
        os.umask(old)
    want = {"": 0o755, "pub": 0o755, "pub/a.json": 0o644, "b.txt": 0o751, "priv": 0o750}

    def modes(root):
        return {rel: oct(os.stat(os.path.join(root, rel)).st_mode & 0o7777) for rel in want}
    ml.check_eq(modes(d), {k: oct(v) for k, v in want.items()}, "modes through the mount")
    ml.check_eq(oct(os.stat(m.mnt).st_mode & 0o7777), oct(0o755), "mode of the mount's root")
    staged = os.path.join(m.cache, "data", job)
    ml.check_eq(modes(staged), {k: oct(0o700 if os.path.isdir(os.path.join(staged, k)) else 0o600)
                                for k in want}, "modes of the staged files in the cache")
    ml.check_eq(oct(os.stat(os.path.join(m.cache, "data")).st_mode & 0o7777), oct(0o700),
                "mode of the cache's data/ directory")
    ml.fsync_dir(d)
    for rel in ("pub/a.json", "b.txt"):
        ml.check_eq(oct(mode_of(meta_of(ctx, ctx.prefix + job + "/" + rel))), oct(want[rel]),
                    "x-amz-meta-mode of " + rel)
    m.umount()
    m2 = ctx.mount(on_completion=True, cache=m.cache)
    ml.check_eq(modes(os.path.join(m2.mnt, job)), {k: oct(v) for k, v in want.items()},
                "modes through the mount after a remount")
    finish(ctx, m2)


@T.case("chmod_after_upload", timeout=60)
def chmod_after_upload(ctx):
    m, job, d = start(ctx)
    p = put_uploaded(ctx, d, "m.txt", b"meta")
    key = ctx.prefix + job + "/m.txt"
    os.chmod(p, 0o600)
    os.utime(p, ns=(1600000000 * 10 ** 9, 1600000000 * 10 ** 9 + 7))
    ml.check_eq(oct(os.stat(p).st_mode & 0o7777), oct(0o600), "mode from stat after chmod 600")
    ml.fsync_dir(d)

    def meta_ok():
        h = meta_of(ctx, key)
        return (h.header("x-amz-meta-mode"), h.header("x-amz-meta-mtime"))
    last = []

    def pred():
        last[:] = [meta_ok()]
        v = last[0]
        return v[0] is not None and int(v[0], 8) & 0o7777 == 0o600 and v[1] == "1600000000.000000007"
    try:
        ml.wait_for(pred, 10, "")
    except ml.Failure:
        ml.fail("metadata of %s 10 s after chmod 600 + utimens of the uploaded file and fsync of the "
                "dir: mode %s, mtime %s (expected 600 and 1600000000.000000007)" % (key, *last[0]))
    finish(ctx, m)


@T.case("symlink", timeout=60)
def symlink(ctx):
    m, job, d = start(ctx)
    ml.write_file(os.path.join(d, "products", "a.json"), b'{"a": 1}')
    link = os.path.join(d, "latest.json")
    os.symlink("products/a.json", link)
    ml.check_eq(os.readlink(link), "products/a.json", "readlink")
    ml.check(stat.S_ISLNK(os.lstat(link).st_mode), "lstat of the symlink is not S_IFLNK")
    ml.check_eq(ml.read_file(link), b'{"a": 1}', "content read through the symlink")
    ml.check("latest.json" in os.listdir(d), "symlink missing from listdir")
    os.symlink("/nonexistent/target", os.path.join(d, "dangling"))
    ml.check_eq(os.readlink(os.path.join(d, "dangling")), "/nonexistent/target", "readlink (dangling)")
    ml.fsync_dir(d)
    ml.check_eq(os.readlink(link), "products/a.json", "readlink after fsync of the dir")
    os.unlink(link)
    ml.check(not os.path.lexists(link), "symlink still there after unlink")
    finish(ctx, m)


@T.case("mkdir_rmdir", timeout=60)
def mkdir_rmdir(ctx):
    m, job, d = start(ctx)
    os.makedirs(os.path.join(d, "a", "b", "c"))
    ml.check(os.path.isdir(os.path.join(d, "a", "b", "c")), "a/b/c is not a directory after mkdir -p")
    ml.check_eq(os.listdir(os.path.join(d, "a")), ["b"], "listdir a")
    ml.write_file(os.path.join(d, "a", "f"), b"x")
    try:
        os.rmdir(os.path.join(d, "a"))
        ml.fail("rmdir of a non-empty directory succeeded")
    except OSError as e:
        ml.check(e.errno in (errno.ENOTEMPTY, errno.EEXIST), "rmdir non-empty: %s, expected ENOTEMPTY"
                 % ml.errname(e))
    os.rmdir(os.path.join(d, "a", "b", "c"))
    os.rmdir(os.path.join(d, "a", "b"))
    ml.check_eq(os.listdir(os.path.join(d, "a")), ["f"], "listdir a after rmdir a/b/c a/b")
    try:
        os.rmdir(os.path.join(d, "nope"))
        ml.fail("rmdir of a missing directory succeeded")
    except FileNotFoundError:
        pass
    try:
        os.mkdir(os.path.join(d, "a"))
        ml.fail("mkdir of an existing directory succeeded")
    except FileExistsError:
        pass
    ml.fsync_dir(d)
    os.unlink(os.path.join(d, "a", "f"))
    deadline = time.monotonic() + 10
    while True:          # the object delete may lag, rmdir must work at once or soon
        try:
            os.rmdir(os.path.join(d, "a"))
            break
        except OSError as e:
            if time.monotonic() > deadline:
                ml.fail("rmdir a after unlinking its only (uploaded) file: %s" % ml.errname(e))
            time.sleep(0.2)
    ml.check(not os.path.exists(os.path.join(d, "a")), "a still exists after rmdir")
    finish(ctx, m)


def gone_now(ctx, d, path, key, what):
    """path was just unlinked/renamed away: stat() must say ENOENT and listdir must not show it;
    if not, Failure describing what the mount shows and when the name went away."""
    if not os.path.lexists(path) and os.path.basename(path) not in os.listdir(d):
        return
    t0 = time.monotonic()
    try:
        content = "read gives %r" % ml.read_file(path)[:20]
    except OSError as e:
        content = "read gives %s" % ml.errname(e)
    listed = os.path.basename(path) in os.listdir(d)
    head = ctx.s3.head(key).status
    while os.path.lexists(path) and time.monotonic() < t0 + 15:
        time.sleep(0.05)
    ml.fail("%s still visible right after %s: stat() succeeds, %s, listdir %s it, HEAD of the "
            "object %d; the name went away %s" % (
                os.path.basename(path), what, content, "shows" if listed else "does not show", head,
                "after %.1f s" % (time.monotonic() - t0) if not os.path.lexists(path) else "not in 15 s"))


@T.case("unlink_uploaded", timeout=90)
def unlink_uploaded(ctx):
    m, job, d = start(ctx)
    put_uploaded(ctx, d, "stays.txt", b"hi")
    for i in range(25):           # the stale-name window was hit about 1 time in 5: try 25 times
        rel = "gone%d.txt" % i
        p = put_uploaded(ctx, d, rel, b"bye")
        key = ctx.prefix + job + "/" + rel
        ml.check(ctx.s3.exists(key), "HEAD %s: 404 right after fsync of the file" % key)
        os.unlink(p)
        gone_now(ctx, d, p, key, "unlink")
        ml.wait_for(lambda: not ctx.s3.exists(key), 10, "%s still in S3 10 s after unlink" % key)
    ml.check_eq(sorted(os.listdir(d)), ["stays.txt"], "listdir after the objects were deleted")
    time.sleep(1)
    ml.check_eq(sorted(os.listdir(d)), ["stays.txt"], "listdir 1 s after the objects were deleted")
    ml.fsync_dir(d)
    ml.check_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"stays.txt": b"hi"}))
    finish(ctx, m)


@T.case("rename_uploaded", timeout=60)
def rename_uploaded(ctx):
    m, job, d = start(ctx)
    data = os.urandom(700 * KiB)
    p = put_uploaded(ctx, d, "old.bin", data)
    os.makedirs(os.path.join(d, "sub"))
    new = os.path.join(d, "sub", "new.bin")
    os.rename(p, new)
    gone_now(ctx, d, p, ctx.prefix + job + "/old.bin", "rename")
    ml.check_eq(ml.sha(ml.read_file(new)), ml.sha(data), "sha256 of sub/new.bin after rename")
    ml.check_eq(sorted(os.listdir(d)), ["sub"], "listdir of the job after rename")
    ml.fsync_dir(d)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"sub/new.bin": data}), timeout=15,
               what="objects after rename old.bin -> sub/new.bin")
    ml.check_eq(sorted(os.listdir(d)), ["sub"], "listdir of the job after the objects moved")
    finish(ctx, m)


@T.case("rename_dir", timeout=90)
def rename_dir(ctx):
    """rename of a directory whose uploaded files were evicted (they are only in S3): every
    object moves to the new prefix by a server-side copy, none stays behind; and a directory of
    staged files moves by re-upload."""
    m, job, d = start(ctx, env={"S3JOBFS_CACHE_MAX_SIZE": "1"})   # evict every clean file
    files = {"pdfs/a.pdf": os.urandom(300 * KiB), "pdfs/b.pdf": os.urandom(200 * KiB),
             "pdfs/deep/c.pdf": os.urandom(100 * KiB)}
    for rel, data in files.items():
        ml.write_file(os.path.join(d, rel), data)
    ml.fsync_dir(d)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map(files), timeout=15,
               what="objects before the directory rename")
    time.sleep(2.5)     # the eviction pass runs every second
    staged = [p for p in ml.tree_files(os.path.join(m.cache, "data")) if p.endswith(".pdf")]
    ml.check(not staged, "files still staged after eviction: %s" % staged[:3])
    os.rename(os.path.join(d, "pdfs"), os.path.join(d, "docs"))
    want = {k.replace("pdfs/", "docs/", 1): v for k, v in files.items()}
    ml.check_tree(os.path.join(d, "docs"), {k[5:]: v for k, v in want.items()},
                  "files read back under docs/")
    ml.check(not os.path.exists(os.path.join(d, "pdfs")), "pdfs/ still exists after the rename")
    ml.fsync_dir(d)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map(want), timeout=20,
               what="objects after rename pdfs/ -> docs/")
    finish(ctx, m)


@T.case("rename_after_unlink", timeout=60)
def rename_after_unlink(ctx):
    """unlink of one uploaded file, then at once rename of another in the same directory."""
    m, job, d = start(ctx)
    for rel in ("a.txt", "b.txt"):
        ml.write_file(os.path.join(d, rel), rel.encode() * 100)
    ml.fsync_dir(d)
    os.unlink(os.path.join(d, "a.txt"))
    try:
        os.rename(os.path.join(d, "b.txt"), os.path.join(d, "b2.txt"))
    except OSError as e:
        ml.fail("rename b.txt -> b2.txt right after unlink a.txt (both uploaded) failed with %s; "
                "listdir then shows %s" % (ml.errname(e), sorted(os.listdir(d))))
    ml.check_eq(sorted(os.listdir(d)), ["b2.txt"], "listdir after unlink a.txt, rename b.txt")
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"b2.txt": b"b.txt" * 100}), timeout=15,
               what="objects after unlink a.txt and rename b.txt -> b2.txt")
    finish(ctx, m)


@T.case("rename_before_upload", timeout=60)
def rename_before_upload(ctx):
    m, job, d = start(ctx, on_completion=True)
    ml.write_file(os.path.join(d, "part.tmp"), b"final")
    os.rename(os.path.join(d, "part.tmp"), os.path.join(d, "final.txt"))
    ml.fsync_dir(d)
    ml.check_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"final.txt": b"final"}),
                what="objects after write part.tmp, rename to final.txt, fsync of the dir")
    finish(ctx, m)


@T.case("delete_before_upload", timeout=60)
def delete_before_upload(ctx):
    m, job, d = start(ctx, on_completion=True)
    ml.write_file(os.path.join(d, "keep.txt"), b"keep")
    ml.write_file(os.path.join(d, "junk", "tmp.txt"), b"junk")
    os.unlink(os.path.join(d, "junk", "tmp.txt"))
    os.rmdir(os.path.join(d, "junk"))
    m.complete(job)
    ml.wait_s3(ctx.s3, ctx.prefix + job + "/", ml.digest_map({"keep.txt": b"keep"}), timeout=20,
               what="objects after complete")
    time.sleep(1)
    ml.check_s3(ctx.s3, ctx.prefix, ml.digest_map({job + "/keep.txt": b"keep"}),
                what="objects 1 s later (the deleted file must never appear)")
    finish(ctx, m)


if __name__ == "__main__":
    T.main()
