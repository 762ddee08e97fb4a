# A miniature NixOS: the host's configuration (a function like a NixOS module) in, and the
# `config` NixOS would produce out, shaped as NixOS shapes it: users.users with their defaults,
# environment.etc entries whose text became `etc-<name>` store files, systemd units built into
# `system-units` with `*.wants` links, and system.build.toplevel whose etc/ and sw/ are laid out
# as make-etc.sh and buildEnv lay them out. It has no module system: options are merged with
# NixOS's defaults by hand, which is all a fixture host needs.
{ lib }:
hostModule:
let
  inherit (lib) pkgs esc concatMap dirOf' mapAttrsToList filterAttrs optionalString unique runCommand;
  h = hostModule { inherit pkgs lib; config = cfg; };
  cfg = result.config;

  version = h.system.nixos.version or "24.11.20250101.0000000";
  hostName = h.networking.hostName or "nixos";
  nftables = h.networking.nftables.enable or false;

  # ---- layout (etc-activation.nix, userborn.nix, sysusers.nix, nixos-init.nix) ----
  overlayOn = h.system.etc.overlay.enable or false;
  mutableEtc = h.system.etc.overlay.mutable or true;
  immutableEtc = overlayOn && !mutableEtc;
  userborn = h.services.userborn.enable or false;
  passwordFilesLocation = h.services.userborn.passwordFilesLocation or (if immutableEtc then "/var/lib/nixos" else "/etc");
  sysusers = h.systemd.sysusers.enable or false;
  nixosInit = h.system.nixos-init.enable or false;

  # ---- users and groups (users-groups.nix defaults, ids.nix numbers) ----
  baseGroups = {
    root = 0; wheel = 1; kmem = 2; tty = 3; disk = 6; audio = 17; floppy = 18; uucp = 19; lp = 20;
    cdrom = 24; tape = 25; video = 26; dialout = 27; utmp = 29; adm = 55; systemd-journal = 62;
    keys = 96; users = 100; input = 174; kvm = 302; render = 303; sgx = 304; shadow = 318;
    nixbld = 30000; nogroup = 65534;
  };
  nrBuildUsers = h.nix.nrBuildUsers or 32;
  buildUsers = builtins.listToAttrs (builtins.genList (i: let n = i + 1; in {
    name = "nixbld${toString n}";
    value = { uid = 30000 + n; group = "nixbld"; extraGroups = [ "nixbld" ]; isSystemUser = true;
      description = "Nix build user ${toString n}"; };
  }) nrBuildUsers);
  baseUsers = {
    root = { uid = 0; group = "root"; home = "/root"; description = "System administrator";
      shell = pkgs.bashInteractive; };
    nobody = { uid = 65534; group = "nogroup"; description = "Unprivileged account (don't use!)"; };
  } // buildUsers;
  declaredUsers = h.users.users or { };
  allUsers = baseUsers // builtins.mapAttrs (n: u: (baseUsers.${n} or { }) // u) declaredUsers;
  normUser = name: u:
    let normal = u.isNormalUser or false; in {
      inherit name;
      uid = u.uid or null;
      isNormalUser = normal;
      isSystemUser = u.isSystemUser or false;
      group = u.group or (if normal then "users" else "");
      extraGroups = u.extraGroups or [ ];
      description = u.description or "";
      home = u.home or (if normal then "/home/${name}" else "/var/empty");
      createHome = u.createHome or normal;
      homeMode = u.homeMode or "700";
      shell = u.shell or (if normal then pkgs.bashInteractive else pkgs.shadow);
      packages = u.packages or [ ];
      hashedPassword = u.hashedPassword or null;
      initialHashedPassword = u.initialHashedPassword or null;
      openssh.authorizedKeys.keys = u.openssh.authorizedKeys.keys or [ ];
    };
  users = builtins.mapAttrs normUser allUsers;
  groupNames = unique (builtins.attrNames baseGroups ++ builtins.attrNames (h.users.groups or { }));
  groups = builtins.listToAttrs (map (n: {
    name = n;
    value = { name = n; gid = (h.users.groups.${n} or { }).gid or (baseGroups.${n} or null);
      members = (h.users.groups.${n} or { }).members or [ ]; };
  }) groupNames);
  shellPath = s: if builtins.isAttrs s && s ? shellPath then "/run/current-system/sw" + s.shellPath else toString s;

  # ---- packages and the system path (buildEnv) ----
  systemPackages = [ pkgs.bashInteractive pkgs.coreutils pkgs.shadow pkgs.nix pkgs.sudo ]
    ++ (h.environment.systemPackages or [ ]);
  buildEnv = name: paths: runCommand name { } ''
    /bin/mkdir -p "$out/bin"
    ${concatMap (p: ''
      for f in ${p}/bin/*; do
        [ -e "$f" ] || continue
        [ -e "$out/bin/''${f##*/}" ] || /bin/ln -s "$f" "$out/bin/''${f##*/}"
      done
    '') paths}
  '';
  systemPath = buildEnv "system-path" systemPackages;

  # ---- systemd units (systemd-lib.nix makeUnit / generateUnits) ----
  upstream = runCommand "systemd-257.2" { } ''
    d="$out/example/systemd/system"
    /bin/mkdir -p "$d"
    for t in basic multi-user sockets sysinit network-pre network timers; do
      printf '[Unit]\nDescription=%s target\n' "$t" > "$d/$t.target"
    done
  '';
  upstreamUnits = [ "basic.target" "multi-user.target" "sockets.target" "sysinit.target"
    "network-pre.target" "network.target" "timers.target" ];
  fwService = if nftables then {
    nftables = { description = "nftables firewall"; wantedBy = [ "multi-user.target" ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "/run/current-system/sw/bin/nft -f /etc/nftables.conf"; }; };
  } else {
    firewall = { description = "Firewall"; wantedBy = [ "sysinit.target" ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; ExecStart = "@/run/current-system/sw/bin/firewall-start firewall-start"; }; };
  };
  fwEnabled = h.networking.firewall.enable or true;
  baseServices = {
    nix-daemon = { description = "Nix Daemon"; serviceConfig.ExecStart = "@${pkgs.nix}/bin/nix-daemon nix-daemon --daemon"; };
  } // (if fwEnabled then fwService else { });
  services = baseServices // (h.systemd.services or { });
  sockets = { nix-daemon = { description = "Nix Daemon Socket"; wantedBy = [ "sockets.target" ];
    listenStreams = [ "/nix/var/nix/daemon-socket/socket" ]; }; } // (h.systemd.sockets or { });
  timers = h.systemd.timers or { };
  iniSection = name: attrs: "[${name}]\n" + concatMap (k:
    let v = attrs.${k}; in "${k}=${if builtins.isBool v then (if v then "true" else "false") else toString v}\n")
    (builtins.attrNames attrs);
  unitText = kind: u: extra:
    iniSection "Unit" ({ Description = u.description or ""; } // (u.unitConfig or { }))
    + "\n" + iniSection kind (extra // (u.serviceConfig or { }));
  mkUnit = name: text: enable:
    if enable then runCommand "unit-${lib.sanitizeName name}" { inherit text; passAsFile = [ "script" "text" ]; } ''
      /bin/mkdir -p "$out"
      /bin/cp "$textPath" "$out/"${esc name}
    ''
    else runCommand "unit-${name}-disabled" { } ''
      /bin/mkdir -p "$out"
      /bin/ln -s /dev/null "$out/"${esc name}
    '';
  normUnit = suffix: kind: extra: n: u: rec {
    unit = "${n}.${suffix}";
    enable = u.enable or true;
    wantedBy = u.wantedBy or [ ];
    requiredBy = u.requiredBy or [ ];
    description = u.description or "";
    drv = mkUnit unit (unitText kind u (extra u)) enable;
  };
  serviceUnits = builtins.mapAttrs (normUnit "service" "Service" (u: { Type = u.serviceConfig.Type or "simple"; })) services;
  socketUnits = builtins.mapAttrs (normUnit "socket" "Socket" (u: { ListenStream = builtins.concatStringsSep " " (u.listenStreams or [ ]); })) sockets;
  timerUnits = builtins.mapAttrs (normUnit "timer" "Timer" (u: { OnCalendar = u.timerConfig.OnCalendar or "daily"; })) timers;
  allUnits = builtins.attrValues serviceUnits ++ builtins.attrValues socketUnits ++ builtins.attrValues timerUnits;
  systemUnits = runCommand "system-units" { } ''
    /bin/mkdir -p "$out"
    ${concatMap (u: "/bin/ln -s ${upstream}/example/systemd/system/${u} \"$out/${u}\"\n") upstreamUnits}
    /bin/ln -s multi-user.target "$out/default.target"
    ${concatMap (u: "/bin/ln -s ${u.drv}/${esc u.unit} \"$out/\"${esc u.unit}\n") allUnits}
    ${concatMap (u: concatMap (t: ''
      /bin/mkdir -p "$out/"${esc "${t}.wants"}
      /bin/ln -sfn ${esc "../${u.unit}"} "$out/"${esc "${t}.wants"}/
    '') u.wantedBy) (builtins.filter (u: u.enable) allUnits)}
  '';

  # ---- /etc (etc.nix, make-etc.sh) ----
  fileSystems = {
    "/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
    "/boot" = { device = "/dev/disk/by-label/boot"; fsType = "vfat"; options = [ "fmask=0077" "dmask=0077" ]; };
  } // (h.fileSystems or { });
  normFs = n: fs: {
    mountPoint = fs.mountPoint or n;
    device = fs.device or null;
    label = fs.label or null;
    fsType = fs.fsType or "auto";
    options = fs.options or [ "defaults" ];
  };
  swapDevices = map (s: { device = s.device or null; label = s.label or null; }) (h.swapDevices or [ ]);
  fstab = concatMap (n: let fs = normFs n fileSystems.${n}; in
    "${if fs.device != null then fs.device else "/dev/disk/by-label/${fs.label}"} ${fs.mountPoint} ${fs.fsType} ${builtins.concatStringsSep "," fs.options} 0 ${if fs.mountPoint == "/" then "1" else "2"}\n")
    (builtins.attrNames fileSystems)
    + concatMap (s: "${s.device} none swap defaults 0 0\n") swapDevices;
  nameservers = h.networking.nameservers or [ ];
  userProfiles = filterAttrs (n: u: u.packages != [ ]) users;
  baseEtc = {
    hostname.text = hostName + "\n";
    hosts.text = "127.0.0.1 localhost\n::1 localhost\n127.0.0.2 ${hostName}\n";
    "nsswitch.conf".text = "passwd:    files systemd\ngroup:     files [success=merge] systemd\nshadow:    files\nhosts:     mymachines files myhostname dns\n";
    "os-release".text = "ANSI_COLOR=\"1;34\"\nID=nixos\nNAME=NixOS\nPRETTY_NAME=\"NixOS 24.11 (Vicuna)\"\nVERSION_ID=\"24.11\"\n";
    shells.text = "/run/current-system/sw/bin/bash\n/run/current-system/sw/bin/sh\n";
    fstab.text = fstab;
    sudoers = { text = "root ALL=(ALL:ALL) SETENV: ALL\n%wheel ALL=(ALL:ALL) SETENV: ALL\n"; mode = "0440"; };
    "resolvconf.conf".text = "resolv_conf=/etc/resolv.conf\nname_servers='${builtins.concatStringsSep " " nameservers}'\nresolv_conf_options='edns0'\n";
    "login.defs".text = "DEFAULT_HOME yes\nSYS_UID_MIN 400\nSYS_UID_MAX 999\nUID_MIN 1000\nUID_MAX 29999\nTTYGROUP tty\n";
    profile.text = "# /etc/profile: DO NOT EDIT -- this file has been generated automatically.\n";
    bashrc.text = "# /etc/bashrc: DO NOT EDIT -- this file has been generated automatically.\n";
    "nix/nix.conf".text = "# WARNING: this file is generated from the nix.* options in\n# your NixOS configuration, typically\n# /etc/nixos/configuration.nix.  Do not edit it!\nbuild-users-group = nixbld\nexperimental-features = nix-command flakes\nsandbox = true\n";
    "pam.d/login".text = "account required pam_unix.so\nauth sufficient pam_unix.so likeauth nullok\npassword sufficient pam_unix.so nullok yescrypt\nsession required pam_unix.so\n";
    "pam.d/sudo".text = "account required pam_unix.so\nauth sufficient pam_unix.so likeauth try_first_pass\nsession required pam_unix.so\n";
    "pam.d/other".text = "account required pam_warn.so\naccount required pam_deny.so\n";
    "systemd/system".source = systemUnits;
  } // builtins.listToAttrs (mapAttrsToList (n: u: {
    name = "profiles/per-user/${n}"; value.source = buildEnv "user-environment" u.packages;
  }) userProfiles);
  # userborn.nix: direct links to passwordFilesLocation when it is not /etc
  userbornEtc = if userborn && passwordFilesLocation != "/etc" then builtins.listToAttrs (map (f: {
    name = f; value = { source = "${passwordFilesLocation}/${f}"; mode = "direct-symlink"; };
  }) [ "group" "passwd" "shadow" ]) else { };
  # sysusers.nix: sysusers.d/00-nixos.conf (system users only), links to /var/lib/nixos/etc when immutable
  sysusersConf = "# Type Name ID GECOS Home directory Shell\n\n# Users\n"
    + concatMap (n: let u = users.${n}; in
        "u ${n} ${if u.uid == null then "/var/lib/nixos/uid/${n}" else toString u.uid}:${u.group} \"${u.description}\" ${u.home} ${shellPath u.shell}\n")
      (builtins.filter (n: !users.${n}.isNormalUser) (builtins.attrNames users))
    + "\n# Groups\n" + concatMap (n: let g = groups.${n}; in
        "g ${n} ${if g.gid == null then "/var/lib/nixos/gid/${n}" else toString g.gid}\n") (builtins.attrNames groups)
    + "\n# Group membership\n" + concatMap (n: concatMap (m: "m ${m} ${n}\n") groups.${n}.members) (builtins.attrNames groups);
  sysusersEtc = if !sysusers then { } else {
    "sysusers.d".source = runCommand "sysusers.d" { text = sysusersConf; passAsFile = [ "script" "text" ]; } ''
      /bin/mkdir -p "$out"
      /bin/cp "$textPath" "$out/00-nixos.conf"
    '';
  } // (if immutableEtc then builtins.listToAttrs (map (f: {
    name = f; value = { source = "/var/lib/nixos/etc/${f}"; mode = "direct-symlink"; };
  }) [ "passwd" "group" "shadow" "gshadow" ]) else { });
  # etc-activation.nix: an empty machine-id placeholder on an immutable /etc
  immutableEtcFiles = if immutableEtc then { machine-id = { text = ""; mode = "0444"; }; } else { };
  etcIn = baseEtc // userbornEtc // sysusersEtc // immutableEtcFiles // (h.environment.etc or { });
  normEtc = n: e: {
    target = e.target or n;
    enable = e.enable or true;
    mode = e.mode or "symlink";
    user = e.user or "+0";
    group = e.group or "+0";
    text = e.text or null;
    source = e.source or (pkgs.writeText (lib.sanitizeName ("etc-" + builtins.replaceStrings [ "/" ] [ "-" ] n)) e.text);
  };
  etcEntries = builtins.mapAttrs normEtc etcIn;
  enabledEtc = builtins.filter (e: e.enable) (builtins.attrValues etcEntries);
  etc = runCommand "etc" { } ''
    /bin/mkdir -p "$out/etc"
    ${concatMap (e: ''
      ${optionalString (dirOf' e.target != "") "/bin/mkdir -p \"$out/etc/\"${esc (dirOf' e.target)}"}
      /bin/ln -s ${esc (toString e.source)} "$out/etc/"${esc e.target}
      ${optionalString (e.mode != "symlink") ''
        echo ${esc e.mode} > "$out/etc/"${esc "${e.target}.mode"}
        echo ${esc e.user} > "$out/etc/"${esc "${e.target}.uid"}
        echo ${esc e.group} > "$out/etc/"${esc "${e.target}.gid"}
      ''}
    '') enabledEtc}
  '';

  # build-composefs-dump.py's input and output: the text of the metadata image (mkcomposefs turns it
  # into erofs on NixOS; the fixture keeps the dump, whose store path names the image)
  etcMetadataImage = runCommand "etc-metadata.dump" { } ''
    {
    echo '/ 4096 40755 1 0 0 0 0.0 - - -'
    ${concatMap (e: if e.mode == "symlink" || e.mode == "direct-symlink"
      then "echo ${esc "/${e.target} 100 120777 1 0 0 0 1.0 ${toString e.source} - -"}\n"
      else "echo ${esc "/${e.target} 0 10${e.mode} 1 ${e.user} ${e.group} 0 1.0 ${e.target} - -"}\n") enabledEtc}
    } > "$out"
  '';

  toplevel = runCommand "nixos-system-${hostName}-${version}" { } ''
    /bin/mkdir -p "$out"
    /bin/ln -s ${etc}/etc "$out/etc"
    /bin/ln -s ${systemPath} "$out/sw"
    printf '%s' ${esc version} > "$out/nixos-version"
    printf '#!/bin/sh\n# activation is simulated by the fixture builder\n' > "$out/activate"
    /bin/chmod 0555 "$out/activate"
  '';

  firewall = h.networking.firewall or { };
  # What the fixture builder needs to "activate" the system like NixOS would.
  spec = {
    inherit hostName nameservers nftables version;
    layout = { inherit overlayOn mutableEtc userborn passwordFilesLocation sysusers nixosInit;
      etcMetadataImage = if overlayOn then toString etcMetadataImage else null; };
    mutableUsers = h.users.mutableUsers or true;
    users = map (u: u // { shell = shellPath u.shell; packages = map toString u.packages; })
      (builtins.attrValues users);
    groups = builtins.attrValues groups;
    units = map (u: { inherit (u) unit enable wantedBy; }) allUnits;
    upstreamUnits = upstreamUnits;
    fileSystems = mapAttrsToList normFs fileSystems;
    inherit swapDevices;
    firewall = {
      enable = fwEnabled;
      allowedTCPPorts = firewall.allowedTCPPorts or [ ];
      allowedUDPPorts = firewall.allowedUDPPorts or [ ];
      allowedTCPPortRanges = firewall.allowedTCPPortRanges or [ ];
      allowedUDPPortRanges = firewall.allowedUDPPortRanges or [ ];
      interfaces = firewall.interfaces or { };
      trustedInterfaces = [ "lo" ] ++ (firewall.trustedInterfaces or [ ]);
      allowPing = firewall.allowPing or true;
    };
  };

  result = {
    config = {
      networking = {
        inherit hostName nameservers;
        domain = h.networking.domain or null;
        nftables.enable = nftables;
        firewall = spec.firewall;
      };
      users = { mutableUsers = spec.mutableUsers; inherit users groups; };
      environment = { inherit systemPackages; etc = etcEntries; };
      systemd = { services = serviceUnits; sockets = socketUnits; inherit timers; sysusers.enable = sysusers; };
      fileSystems = builtins.mapAttrs normFs fileSystems;
      inherit swapDevices;
      services.resolved.enable = false;
      services.userborn = { enable = userborn; inherit passwordFilesLocation; };
      system = {
        etc.overlay = { enable = overlayOn; mutable = mutableEtc; };
        nixos-init.enable = nixosInit;
        nixos.version = version;
        stateVersion = "24.11";
        build = {
          inherit toplevel etc etcMetadataImage;
          fixtureSpec = pkgs.writeText "nixdrift-fixture-spec.json" (builtins.toJSON spec);
        };
      };
    };
  };
in
result
