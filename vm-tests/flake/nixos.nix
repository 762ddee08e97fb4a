# A miniature NixOS: the host's attribute set in, `config` out, shaped as NixOS shapes it
# (environment.etc entries with a `source` in the store, system.build.toplevel whose etc/ is laid
# out as make-etc.sh lays it out and whose sw/ is the system path).
{ system }:
host:
let
  concatMap = f: l: builtins.concatStringsSep "" (map f l);
  sh = name: script: derivation { inherit name system; builder = "/bin/sh"; args = [ "-c" script ]; };
  pkgs.mkPkg = pname: version: derivation {
    name = "${pname}-${version}";
    inherit pname version system;
    builder = "/bin/sh";
    args = [ "-c" ''
      /bin/mkdir -p $out/bin
      printf '#!/bin/sh\necho ${pname} ${version}\n' > $out/bin/${pname}
      /bin/chmod 0555 $out/bin/${pname}
    '' ];
  };
  h = host { inherit pkgs; };

  systemPath = sh "system-path" ''
    /bin/mkdir -p $out/bin
    ${concatMap (p: ''
      for f in ${p}/bin/*; do /bin/ln -s "$f" "$out/bin/''${f##*/}"; done
    '') h.environment.systemPackages}
  '';

  # the closure's unit directory (etc/systemd/system) holds the declared services; the guest's
  # own units stay Debian's
  services = h.systemd.services or { };
  unitFile = name: s: builtins.toFile "${name}.service" ''
    [Unit]
    Description=${s.description or name}

    [Service]
    ExecStart=${s.serviceConfig.ExecStart}
  '';
  systemUnits = sh "system-units" ''
    /bin/mkdir -p $out
    ${concatMap (n: "/bin/cp ${unitFile n services.${n}} $out/${n}.service\n") (builtins.attrNames services)}
  '';
  etcIn = h.environment.etc // { "systemd/system".source = systemUnits; };
  etcEntries = builtins.mapAttrs (n: e: {
    target = e.target or n;
    enable = e.enable or true;
    mode = e.mode or "symlink";
    user = e.user or "+0";
    group = e.group or "+0";
    source = e.source or (builtins.toFile ("etc-" + baseNameOf n) e.text);
  }) etcIn;
  etc = sh "etc" ''
    /bin/mkdir -p $out/etc
    ${concatMap (e: ''
      /bin/mkdir -p "$out/etc/${builtins.dirOf e.target}"
      /bin/ln -s ${e.source} "$out/etc/${e.target}"
      ${if e.mode == "symlink" then "" else ''
        echo ${e.mode} > "$out/etc/${e.target}.mode"
        echo ${e.user} > "$out/etc/${e.target}.uid"
        echo ${e.group} > "$out/etc/${e.target}.gid"
      ''}
    '') (builtins.attrValues etcEntries)}
  '';

  toplevel = sh "nixos-system-${h.networking.hostName}-${h.system.nixos.version}" ''
    /bin/mkdir -p $out
    /bin/ln -s ${etc}/etc $out/etc
    /bin/ln -s ${systemPath} $out/sw
    printf '%s' ${h.system.nixos.version} > $out/nixos-version
  '';

  firewall = h.networking.firewall;
in
{
  config = {
    networking = {
      inherit (h.networking) hostName nameservers;
      nftables.enable = h.networking.nftables.enable;
      firewall = firewall // { trustedInterfaces = [ "lo" ]; allowPing = true; interfaces = { }; };
    };
    users = {
      inherit (h.users) mutableUsers;
      users = builtins.mapAttrs (n: u: { name = n; extraGroups = [ ]; isSystemUser = false; isNormalUser = false; } // u) h.users.users;
      groups = builtins.mapAttrs (n: g: { name = n; } // g) h.users.groups;
    };
    environment = { inherit (h.environment) systemPackages; etc = etcEntries; };
    systemd.services = builtins.mapAttrs (n: s: { enable = true; wantedBy = [ ]; } // s) services;
    inherit (h) fileSystems swapDevices;
    system = { nixos.version = h.system.nixos.version; build.toplevel = toplevel; };
  };
}
