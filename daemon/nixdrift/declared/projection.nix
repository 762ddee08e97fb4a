# Projection of a NixOS configuration onto what nixdrift compares.
#
# Applied with `nix eval --json <flake>#nixosConfigurations."<host>".config --apply <this text>`.
# It is passed as expression text (not imported) so it works in pure evaluation mode. It must not
# use nixpkgs' lib: small test flakes have none. Every attribute is read with `or <NixOS default>`
# so that any NixOS release and any partial test configuration evaluate. Never serialise the whole
# config: that forces throwing options and costs seconds on a real system.
#
# Secrets: password options are reduced to booleans (set or not); their values never leave Nix.
config:
let
  try = v: d: let r = builtins.tryEval v; in if r.success then r.value else d;
  isDrv = p: builtins.isAttrs p && (p.type or null) == "derivation";
  str = p:
    if p == null then null
    else if builtins.isString p then p
    else if builtins.isPath p then toString p
    else if builtins.isAttrs p then try (p.outPath or null) null
    else toString p;
  # builtins.toJSON turns an attrset holding outPath into a bare string, so derivations are
  # projected into records without it.
  drv = p:
    if builtins.isAttrs p then
      let parsed = builtins.parseDrvName (p.name or ""); in {
        name = p.name or null;
        pname = p.pname or parsed.name;
        version = p.version or parsed.version;
        path = try (p.outPath or null) null;
      }
    else { name = baseNameOf (toString p); pname = null; version = null; path = toString p; };
  drvs = l: map drv (builtins.filter (p: p != null) l);
  mapSet = f: s: builtins.mapAttrs f s;
  shellPath = s:
    if s == null then null
    else if builtins.isAttrs s && s ? shellPath then "/run/current-system/sw" + s.shellPath
    else str s;
  # "!" and "*" lock the account (NixOS itself sets root's initialHashedPassword = "!"): no password
  isSet = v: v != null && v != "!" && v != "*" && v != "";

  users = config.users or { };
  systemd = config.systemd or { };
  networking = config.networking or { };
  firewall = networking.firewall or { };
  ports = fw: {
    allowedTCPPorts = fw.allowedTCPPorts or [ ];
    allowedUDPPorts = fw.allowedUDPPorts or [ ];
    allowedTCPPortRanges = fw.allowedTCPPortRanges or [ ];
    allowedUDPPortRanges = fw.allowedUDPPortRanges or [ ];
  };
  unit = suffix: name: u: {
    unit = "${name}.${suffix}";
    enable = u.enable or true;
    wantedBy = u.wantedBy or [ ];
    requiredBy = u.requiredBy or [ ];
  };
  units = suffix: set: builtins.attrValues (mapSet (unit suffix) set);
in
{
  toplevel = try (config.system.build.toplevel.outPath or null) null;
  nixosVersion = config.system.nixos.version or null;
  stateVersion = config.system.stateVersion or null;

  hostName = networking.hostName or "";
  domain = networking.domain or null;
  nameservers = networking.nameservers or [ ];
  resolved = config.services.resolved.enable or false;
  useLocalResolver = networking.resolvconf.useLocalResolver or false;

  systemPackages = drvs (config.environment.systemPackages or [ ]);

  mutableUsers = users.mutableUsers or true;
  users = mapSet (n: u: {
    name = u.name or n;
    uid = u.uid or null;
    group = u.group or "";
    extraGroups = u.extraGroups or [ ];
    isSystemUser = u.isSystemUser or false;
    isNormalUser = u.isNormalUser or false;
    home = u.home or "/var/empty";
    shell = shellPath (u.shell or null);
    packages = drvs (u.packages or [ ]);
    # presence only: never the value
    hasPassword = builtins.any isSet [
      (u.hashedPassword or null) (u.hashedPasswordFile or null) (u.passwordFile or null)
      (u.password or null) (u.initialPassword or null) (u.initialHashedPassword or null)
    ];
    authorizedKeys = builtins.length (u.openssh.authorizedKeys.keys or [ ]);
  }) (users.users or { });
  groups = mapSet (n: g: {
    name = g.name or n;
    gid = g.gid or null;
    members = g.members or [ ];
  }) (users.groups or { });

  units = (units "service" (systemd.services or { }))
    ++ (units "socket" (systemd.sockets or { }))
    ++ (units "timer" (systemd.timers or { }))
    ++ (units "mount" (builtins.listToAttrs (map (m: { name = m.where or "mount"; value = m; }) (systemd.mounts or [ ]))));

  etc = mapSet (n: e: {
    target = e.target or n;
    enable = e.enable or true;
    mode = e.mode or "symlink";
    user = e.user or "+0";
    group = e.group or "+0";
    source = str (e.source or null);
  }) (config.environment.etc or { });

  firewall = ports firewall // {
    enable = firewall.enable or true;
    # newer NixOS has networking.firewall.backend (also "firewalld"); before, nftables.enable decided
    backend = firewall.backend or (if (networking.nftables.enable or false) then "nftables" else "iptables");
    trustedInterfaces = firewall.trustedInterfaces or [ ];
    interfaces = mapSet (_: ports) (firewall.interfaces or { });
    allowPing = firewall.allowPing or true;
    # rules of the flake's own: a port they open cannot be told from one opened by hand
    hasExtraRules = (firewall.extraCommands or "") != "" || (firewall.extraInputRules or "") != ""
      || (firewall.extraForwardRules or "") != "";
  };

  # the NixOS layout (see nixdrift.layout): /etc overlay, accounts backend, init
  layout = let
    overlay = config.system.etc.overlay or { };
    userborn = config.services.userborn or { };
    overlayOn = overlay.enable or false;
    mutableEtc = overlay.mutable or true;
  in {
    etcOverlay = overlayOn;
    etcOverlayMutable = mutableEtc;
    userborn = userborn.enable or false;
    # userborn.nix: /var/lib/nixos when /etc is immutable, else /etc
    userbornPasswordFilesLocation = userborn.passwordFilesLocation
      or (if overlayOn && !mutableEtc then "/var/lib/nixos" else "/etc");
    sysusers = systemd.sysusers.enable or false;
    nixosInit = config.system.nixos-init.enable or false;
    # only on overlay hosts: their outPaths cost an evaluation of the image's derivation
    etcMetadataImage = if overlayOn then try (str (config.system.build.etcMetadataImage or null)) null else null;
    etcBasedir = if overlayOn then try (str (config.system.build.etcBasedir or null)) null else null;
  };

  fileSystems = mapSet (n: fs: {
    mountPoint = fs.mountPoint or n;
    device = fs.device or null;
    label = fs.label or null;
    fsType = fs.fsType or "auto";
    options = fs.options or [ "defaults" ];
  }) (config.fileSystems or { });
  swapDevices = map (s: {
    device = s.device or null;
    label = s.label or null;
  }) (config.swapDevices or [ ]);
}
