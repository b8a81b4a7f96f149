#!/usr/bin/env python3
"""Builds the local rocks servers the package tests install from, offline.

    build_servers.py OUT [LUA_VERSION]

Under OUT/<lua version>/ it writes:

  main/      every rock of specs/*.rockspec (sources from src/, packed with `luarocks pack`
             into .src.rock files), plus rocks made from Debian's lua-* packages when they
             are installed (inspect, luafilesystem, lua-cjson, lpeg, penlight: their files
             repacked as builtin rocks), indexed with `luarocks-admin make-manifest`
  partial/   bxt-base 2.0-1 only (a server that cannot provide bxt-base 1.0-1)
  tampered/  bxt-base 1.0-1 built from other files (same version, other content)
  broken/    bxt-syntax 1.0-1, a rockspec that is not valid Lua (the manifest is written
             here: luarocks-admin cannot index a rockspec it cannot load)
  src/       the source tarballs (the rockspecs point at them with file:// URLs)

A finished build leaves OUT/<lua>/stamp holding a hash of its inputs; a later call with
the same inputs returns at once. Everything luarocks writes goes under OUT (HOME and the
configuration are pointed there).
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = sys.argv[2] if len(sys.argv) > 2 else "5.4"
OUT = Path(sys.argv[1]).resolve() / LUA
ARCH = "x86_64-linux-gnu"

# Rocks made from Debian's files: name, version, Lua roots (under /usr/share/lua/5.1 or
# /usr/share/lua/<v>), C modules (module -> file under /usr/lib/<arch>/lua/<v>), deps.
DEBIAN = [
    ("inspect", "3.1.1-1", ["inspect.lua"], {}, []),
    ("luafilesystem", "1.8.0-1", [], {"lfs": "lfs.so"}, []),
    ("lua-cjson", "2.1.0-1", ["cjson"], {"cjson": "cjson.so"}, []),
    ("lpeg", "1.0.2-1", ["re.lua"], {"lpeg": "lpeg.so"}, []),
    ("penlight", "1.13.1-1", ["pl"], {}, ["luafilesystem"]),
]


def inputs_hash():
    h = hashlib.sha256()
    h.update(LUA.encode())
    for p in sorted(HERE.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(HERE)).encode())
            h.update(p.read_bytes())
    for name, _, roots, libs, _ in DEBIAN:
        for f in debian_files(roots, libs):
            h.update(str(f).encode())
    return h.hexdigest()


def lua_root(rel):
    for base in (Path("/usr/share/lua") / LUA, Path("/usr/share/lua/5.1")):
        if (base / rel).exists():
            return base
    return None


def debian_files(roots, libs):
    out = []
    for r in roots:
        base = lua_root(r)
        if base is None:
            return None
        p = base / r
        out += [p] if p.is_file() else sorted(q for q in p.rglob("*.lua"))
    for f in libs.values():
        p = Path("/usr/lib") / ARCH / "lua" / LUA / f
        if not p.is_file():
            return None
        out.append(p)
    return out


def tar_dir(src, top, dst):
    with tarfile.open(dst, "w:gz") as t:
        t.add(src, arcname=top)


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("LUA")}
    home = OUT / "home"
    home.mkdir(parents=True, exist_ok=True)
    cfg = OUT / "config.lua"
    cfg.write_text('rocks_trees = { { name = "scratch", root = "%s" } }\nrocks_servers = {}\nlocal_cache = "%s"\n'
                   % (OUT / "scratch-tree", OUT / "cache"))
    e.update(HOME=str(home), LUAROCKS_CONFIG=str(cfg), LC_ALL="C")
    e["LUAROCKS_CONFIG_" + LUA.replace(".", "_")] = str(cfg)
    return e


def luarocks(args, cwd, admin=False):
    prog = "/usr/bin/luarocks-admin" if admin else "/usr/bin/luarocks"
    lua = shutil.which("lua" + LUA) or shutil.which("lua5.4") or "lua"
    return subprocess.run([lua, prog, "--lua-version=" + LUA] + args, cwd=cwd, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_spec(template, dst, srcdir):
    text = template.read_text().replace("@SRC@", "file://" + str(srcdir))
    dst.write_text(text)
    return dst


def pack_all(specs, server):
    server.mkdir(parents=True, exist_ok=True)
    procs = []
    for s in specs:
        while len(procs) >= 4:
            procs.pop(0).wait()
        lua = shutil.which("lua" + LUA) or "lua5.4"
        procs.append(subprocess.Popen([lua, "/usr/bin/luarocks", "--lua-version=" + LUA, "pack", str(s)],
                                      cwd=server, env=env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit("luarocks pack failed: %s" % err.decode())
    r = luarocks(["make-manifest", str(server)], cwd=server, admin=True)
    if r.returncode != 0:
        sys.exit("make-manifest failed: %s" % r.stderr)


def debian_rocks(srcdir, specdir):
    specs = []
    for name, ver, roots, libs, deps in DEBIAN:
        files = debian_files(roots, libs)
        if files is None:
            continue
        up = ver.rsplit("-", 1)[0]
        top = "%s-%s" % (name, up)
        tgz = srcdir / (top + ".tar.gz")
        modules = {}
        with tarfile.open(tgz, "w:gz") as t:
            for r in roots:
                base = lua_root(r)
                p = base / r
                for f in ([p] if p.is_file() else sorted(p.rglob("*.lua"))):
                    rel = str(f.relative_to(base))
                    t.add(os.path.realpath(f), arcname="%s/%s" % (top, rel))
                    m = rel[:-4].replace("/", ".")
                    modules[m[:-5] if m.endswith(".init") else m] = rel
            for m, f in libs.items():
                t.add(os.path.realpath(Path("/usr/lib") / ARCH / "lua" / LUA / f), arcname="%s/%s" % (top, f))
        lines = ['package = "%s"' % name, 'version = "%s"' % ver,
                 'source = { url = "file://%s", dir = "%s" }' % (tgz, top),
                 'description = { summary = "%s (repacked from Debian for offline tests)", license = "MIT" }' % name,
                 'dependencies = { "lua >= 5.1"%s }' % "".join(', "%s"' % d for d in deps),
                 'build = {', '  type = "builtin",', '  modules = {']
        lines += ['    ["%s"] = "%s",' % (m, p) for m, p in sorted(modules.items())]
        lines += ['  },']
        if libs:
            lines += ['  install = { lib = {'] + ['    ["%s"] = "%s",' % (m, f) for m, f in libs.items()] + ['  } },']
        lines += ['}']
        spec = specdir / ("%s-%s.rockspec" % (name, ver))
        spec.write_text("\n".join(lines) + "\n")
        specs.append(spec)
    return specs


def main():
    stamp = OUT / "stamp"
    want = inputs_hash()
    if stamp.exists() and stamp.read_text() == want:
        print(OUT)
        return
    if OUT.exists():
        shutil.rmtree(OUT)
    srcdir = OUT / "src"
    specdir = OUT / "specs"
    for d in (srcdir, specdir / "tampered", specdir / "broken"):
        d.mkdir(parents=True)
    for d in sorted((HERE / "src").iterdir()):
        tar_dir(d, d.name, srcdir / (d.name + ".tar.gz"))
    main_specs = [write_spec(t, specdir / t.name, srcdir) for t in sorted((HERE / "specs").glob("*.rockspec"))]
    main_specs += debian_rocks(srcdir, specdir)
    pack_all(main_specs, OUT / "main")
    pack_all([s for s in main_specs if s.name == "bxt-base-2.0-1.rockspec"], OUT / "partial")
    pack_all([write_spec(HERE / "specs/tampered/bxt-base-1.0-1.rockspec", specdir / "tampered/bxt-base-1.0-1.rockspec", srcdir)],
             OUT / "tampered")
    broken = OUT / "broken"
    broken.mkdir()
    write_spec(HERE / "specs/broken/bxt-syntax-1.0-1.rockspec", broken / "bxt-syntax-1.0-1.rockspec", srcdir)
    manifest = ('commands = {}\nmodules = {}\nrepository = {\n   ["bxt-syntax"] = {\n      ["1.0-1"] = {\n'
                '         {\n            arch = "rockspec"\n         }\n      }\n   }\n}\n')
    for name in ["manifest"] + ["manifest-" + v for v in ("5.1", "5.2", "5.3", "5.4")]:
        (broken / name).write_text(manifest)
    for d in (OUT / "home", OUT / "cache", OUT / "scratch-tree"):
        shutil.rmtree(d, ignore_errors=True)
    for root, dirs, files in os.walk(OUT):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    stamp.write_text(want)
    print(OUT)


if __name__ == "__main__":
    main()
