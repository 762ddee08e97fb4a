# A tiny stand-in for the parts of nixpkgs a NixOS system needs, for hosts without nixpkgs.
#
# Every builder is /bin/sh (dash) with the sandbox off: only shell builtins plus absolute /bin
# tools exist inside a build. Store paths are named as nixpkgs names them (`hello-2.12.1`,
# `etc-motd`, `unit-nginx.service`, `system-units`, `etc`, `system-path`) so a host built from
# this looks like a NixOS host to anything that reads it.
{ system }:
rec {
  esc = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  concatMap = f: l: builtins.concatStringsSep "" (map f l);
  dirOf' = p: let d = dirOf p; in if d == "." then "" else d;
  mapAttrsToList = f: s: map (n: f n s.${n}) (builtins.attrNames s);
  filterAttrs = p: s: builtins.listToAttrs (builtins.filter (kv: p kv.name kv.value)
    (map (n: { name = n; value = s.${n}; }) (builtins.attrNames s)));
  optionalString = c: s: if c then s else "";
  # lib.strings.sanitizeDerivationName: store names allow only these characters
  sanitizeName = s: builtins.concatStringsSep "" (builtins.genList (i:
    let c = builtins.substring i 1 s; in if builtins.match "[A-Za-z0-9+._?=-]" c != null then c else "-")
    (builtins.stringLength s));
  unique = l: builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] l;

  # runCommand with the script passed as a file (large scripts exceed the argument limit).
  runCommand = name: env: script: derivation ({
    inherit name system script;
    builder = "/bin/sh";
    args = [ "-c" ". \"$scriptPath\"" ];
    passAsFile = [ "script" ];
  } // env);

  # passAsFile as nixpkgs' writeText does: large texts exceed the environment's limit
  writeText = name: text: derivation {
    inherit name system text;
    builder = "/bin/sh";
    args = [ "-c" "/bin/cp \"$textPath\" \"$out\"" ];
    passAsFile = [ "text" ];
  };

  # A package: bin/<name> scripts, pname and version as nixpkgs sets them.
  mkPkg = { pname, version, bins ? [ pname ], shellPath ? null }:
    let
      drv = runCommand "${pname}-${version}" { inherit pname version; } ''
        /bin/mkdir -p "$out/bin"
        ${concatMap (b: ''
          printf '#!/bin/sh\necho %s\n' ${esc "${b} (${pname} ${version})"} > "$out/bin/"${esc b}
          /bin/chmod 0555 "$out/bin/"${esc b}
        '') bins}
      '';
    in drv // (if shellPath == null then { } else { inherit shellPath; });

  # One derivation holding many files (a scale fixture: thousands of etc sources in one build).
  fileTree = name: files: runCommand name { } ''
    /bin/mkdir -p "$out"
    ${concatMap (f: ''
      ${optionalString (dirOf' f.path != "") "/bin/mkdir -p \"$out/\"${esc (dirOf' f.path)}"}
      printf '%s' ${esc f.text} > "$out/"${esc f.path}
    '') files}
  '';

  pkgs = {
    inherit mkPkg writeText runCommand fileTree;
    bashInteractive = mkPkg { pname = "bash-interactive"; version = "5.2p37"; bins = [ "bash" "sh" ]; shellPath = "/bin/bash"; };
    shadow = mkPkg { pname = "shadow"; version = "4.16.0"; bins = [ "nologin" "passwd" "useradd" "usermod" ]; shellPath = "/bin/nologin"; };
    coreutils = mkPkg { pname = "coreutils-full"; version = "9.5"; bins = [ "ls" "cat" "cp" "env" ]; };
    nix = mkPkg { pname = "nix"; version = "2.24.10"; bins = [ "nix" "nix-env" "nix-store" "nix-build" ]; };
    sudo = mkPkg { pname = "sudo"; version = "1.9.16p2"; bins = [ "sudo" ]; };
  };
}
