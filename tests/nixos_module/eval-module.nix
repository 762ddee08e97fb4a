# Evaluates nixos-module/default.nix without nixpkgs: a stand-in for the few parts of lib, pkgs and
# the module system the module uses. Options are resolved from `user` over their defaults, values
# are checked against their declared types, and `mkIf` is honoured. The result is the module's
# `config` (assertions included), as JSON with `nix-instantiate --eval --strict --json`.
{ user ? { }, hostName ? "web1" }:
let
  types = {
    str = { name = "str"; check = builtins.isString; };
    bool = { name = "bool"; check = builtins.isBool; };
    package = { name = "package"; check = v: builtins.isString v || builtins.isAttrs v; };
    path = { name = "path"; check = v: builtins.isString v || builtins.isPath v; };
    attrs = { name = "attrs"; check = builtins.isAttrs; };
    ints.positive = { name = "positive integer"; check = v: builtins.isInt v && v > 0; };
    nullOr = t: { name = "null or ${t.name}"; check = v: v == null || t.check v; };
    listOf = t: { name = "list of ${t.name}"; check = v: builtins.isList v && builtins.all t.check v; };
    attrsOf = t: { name = "attribute set of ${t.name}"; check = v: builtins.isAttrs v && builtins.all t.check (builtins.attrValues v); };
    enum = l: { name = "one of ${builtins.toJSON l}"; check = v: builtins.elem v l; };
  };
  lib = {
    inherit types;
    mkOption = o: o // { _type = "option"; };
    mkEnableOption = d: { _type = "option"; type = types.bool; default = false; description = "Whether to enable ${d}."; };
    mkIf = cond: content: { _type = "if"; inherit cond content; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: l: if c then l else [ ];
    optionalAttrs = c: a: if c then a else { };
    concatStringsSep = builtins.concatStringsSep;
    recursiveUpdate = a: b: a // builtins.mapAttrs
      (n: v: if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then lib.recursiveUpdate a.${n} v else v) b;
  };
  pkgs = {
    formats.yaml = { }: {
      type = { name = "YAML value"; check = _: true; };
      # JSON is YAML: the real generator (remarshal) renders the same value
      generate = name: value: builtins.toFile name (builtins.toJSON value);
    };
    git = "/nix/store/00000000000000000000000000000000-git";
    nftables = "/nix/store/00000000000000000000000000000000-nftables";
    iptables = "/nix/store/00000000000000000000000000000000-iptables";
    systemd = "/nix/store/00000000000000000000000000000000-systemd";
    coreutils = "/nix/store/00000000000000000000000000000000-coreutils";
    kubectl = "/nix/store/00000000000000000000000000000000-kubectl";
  };
  isOption = v: builtins.isAttrs v && (v._type or null) == "option";
  resolve = path: decls: given: builtins.mapAttrs
    (n: d:
      if isOption d then
        let
          v = given.${n} or (d.default or (throw "option ${path}.${n} is used but not defined"));
        in
        if d ? type && !(d.type.check v)
        then throw "option ${path}.${n}: ${builtins.toJSON v} is not a ${d.type.name}"
        else v
      else resolve "${path}.${n}" d (given.${n} or { }))
    decls;
  module = import ../../nixos-module/default.nix;
  config = {
    networking.hostName = hostName;
    nix.package = "/nix/store/00000000000000000000000000000000-nix";
    services.nixdrift = resolve "services.nixdrift" evaluated.options.services.nixdrift user;
  };
  evaluated = module { inherit config lib pkgs; };
  body = if (evaluated.config._type or null) == "if"
    then (if evaluated.config.cond then evaluated.config.content else { })
    else evaluated.config;
  failed = builtins.filter (a: !a.assertion) (body.assertions or [ ]);
in
if failed != [ ] then throw "assertion failed: ${(builtins.head failed).message}" else body
