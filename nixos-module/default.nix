# services.nixdrift: continuous drift detection between this host and the flake that declares it.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.nixdrift;
  inherit (lib) mkEnableOption mkIf mkOption types literalExpression;
  settingsFormat = pkgs.formats.yaml { };
  stateDir = "/var/lib/nixdrift";

  # The typed options feed the config file; `settings` (freeform) is merged over them.
  typedSettings = {
    inherit (cfg) flake hostName alertThreshold autoRemediate exceptions realtime reportDir;
    inherit stateDir;
    intervals = cfg.intervals;
    inherit (cfg) reportFormat;
  } // lib.optionalAttrs (cfg.prometheus.textfileDir != null) {
    prometheus.textfileDir = cfg.prometheus.textfileDir;
  } // lib.optionalAttrs cfg.kubernetes.enable {
    kubernetes = {
      enable = true;
      inherit (cfg.kubernetes) namespace heartbeat;
    } // lib.optionalAttrs (cfg.kubernetes.kubeconfig != null) {
      kubeconfig = toString cfg.kubernetes.kubeconfig;
    };
  } // lib.optionalAttrs cfg.kube.enable {
    kube = {
      enable = true;
      inherit (cfg.kube) manifests secretMaxAgeDays intervals autoRemediate;
    } // lib.optionalAttrs (cfg.kube.kubeconfig != null) { inherit (cfg.kube) kubeconfig; }
      // lib.optionalAttrs (cfg.kube.namespace != null) { inherit (cfg.kube) namespace; }
      // lib.optionalAttrs (cfg.kube.cluster != null) { inherit (cfg.kube) cluster; };
  };
  # `kubectl kustomize` renders a kustomization directory of manifests
  servicePath = [ config.nix.package pkgs.git pkgs.nftables pkgs.iptables pkgs.systemd ]
    ++ lib.optional cfg.kube.enable pkgs.kubectl;
  configFile = settingsFormat.generate "nixdrift.yaml" (lib.recursiveUpdate typedSettings cfg.settings);

  # "-": a directory that does not exist yet must not keep the service from starting
  writable = [ stateDir "-${cfg.reportDir}" ]
    ++ lib.optional (cfg.prometheus.textfileDir != null) "-${cfg.prometheus.textfileDir}"
    # reverting a low-severity drift writes where the drift is: /etc and the runtime unit dirs
    ++ lib.optionals cfg.autoRemediate [ "/etc" "/run/systemd/system" ];

  hardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = "read-only"; # users' ~/.nix-profile manifests are read, never written
    ReadWritePaths = writable;
    PrivateTmp = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
    # Exactly what reading needs: CAP_DAC_READ_SEARCH for /etc/shadow (presence of a hash
    # only) and users' profiles, CAP_NET_ADMIN for `nft list ruleset`/iptables-save, and
    # CAP_SYS_PTRACE to map listening sockets to their processes in /proc. D-Bus reads of
    # systemd need no capability.
    CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" "CAP_NET_ADMIN" "CAP_SYS_PTRACE" ]
      ++ lib.optionals cfg.autoRemediate [ "CAP_DAC_OVERRIDE" "CAP_CHOWN" "CAP_FOWNER" ];
  };
in
{
  options.services.nixdrift = {
    enable = mkEnableOption "nixdrift, which reports where this host has drifted from its flake";

    package = mkOption {
      type = types.package;
      description = "The nixdrift package. The flake's `nixosModules.default` sets it to its own build.";
    };

    flake = mkOption {
      type = types.str;
      default = "/etc/nixos";
      example = "github:example/infra";
      description = ''
        The flake this host is built from: a local checkout (whose git state is checked too) or
        any flake reference `nix eval` accepts.
      '';
    };

    hostName = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      description = "The `nixosConfigurations` entry that declares this host.";
    };

    flakeOutputs = mkOption {
      type = types.nullOr types.attrs;
      default = null;
      example = literalExpression "self";
      description = ''
        Your flake's outputs (`self`), when you want evaluation to fail early, with a clear
        message, if `hostName` is not one of its `nixosConfigurations`.
      '';
    };

    realtime = mkOption {
      type = types.bool;
      default = true;
      description = "Watch /etc, unit directories, profiles and the config repository with inotify and report changes within a second.";
    };

    schedule = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 06:00:00";
      description = "When the report timer writes the full report set (systemd OnCalendar syntax).";
    };

    intervals = mkOption {
      type = types.attrsOf types.ints.positive;
      default = { };
      example = { etc = 120; packages = 1800; };
      description = ''
        Seconds between full scans per category (generation, packages, services, service-config,
        users, etc, network, firewall, exposure, mounts, repo). Unset categories keep their
        defaults: etc and users 5 min; services, firewall and exposure 15 min; packages and
        mounts 1 h; generation and repo 6 h.
      '';
    };

    alertThreshold = mkOption {
      type = types.enum [ "low" "medium" "high" "critical" ];
      default = "medium";
      description = "Lowest severity that raises a journald alert and counts as drift.";
    };

    autoRemediate = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Revert low-severity drift automatically when its revert is known to be safe. Nothing
        above low is ever changed. Off by default; every action is recorded in the history.
      '';
    };

    exceptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "etc/etc/motd" "/etc/NetworkManager/system-connections/*" ];
      description = "Glob patterns on finding ids or paths that are never reported.";
    };

    reportDir = mkOption {
      type = types.str;
      default = "${stateDir}/reports";
      description = "Where the report timer writes drift-report.md, the JSON, the remediation script and metrics.";
    };

    prometheus.textfileDir = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/prometheus-node-exporter-text-files";
      description = "Directory of node_exporter's textfile collector; nixdrift.prom is written there.";
    };

    kubernetes = {
      enable = mkEnableOption "publishing this host's report as a PolicyReport to Kubernetes";
      kubeconfig = mkOption {
        # a string, not a path: a path literal would copy the credentials into the world-readable store
        type = types.nullOr types.str;
        default = null;
        example = "/run/keys/nixdrift-kubeconfig";
        description = "Kubeconfig file with this host's credentials (see deploy/README.md); null uses in-cluster config.";
      };
      heartbeat = mkOption {
        type = types.ints.positive;
        default = 3600;
        description = "Seconds between re-sends of an unchanged report, so the fleet view can tell a silent host.";
      };
      namespace = mkOption {
        type = types.str;
        default = "nixdrift";
        description = "Namespace of the PolicyReports.";
      };
    };

    reportFormat = mkOption {
      type = types.enum [ "policyreport" "openreports" "both" ];
      default = "policyreport";
      description = ''
        The Kubernetes kind reports are published as, for this host and for the cluster checks
        alike: `wgpolicyk8s.io/v1alpha2` PolicyReports, `openreports.io/v1alpha1` Reports (their
        successor), or both.
      '';
    };

    kube = {
      enable = mkEnableOption "the daemon's checks of a Kubernetes cluster against a directory of manifests (`nixdrift kube`)";
      manifests = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/srv/infra/k8s";
        description = "Directory of the cluster's manifests (YAML files, or a kustomization), ideally a git checkout.";
      };
      kubeconfig = mkOption {
        # a string, not a path: a path literal would copy the credentials into the world-readable store
        type = types.nullOr types.str;
        default = null;
        example = "/run/keys/nixdrift-cluster-kubeconfig";
        description = "Kubeconfig of the checked cluster (read-only access is enough unless autoRemediate); null uses in-cluster config.";
      };
      namespace = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Only this namespace; null checks every namespace but the system ones.";
      };
      cluster = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "prod";
        description = "The cluster's name in its reports (null: `cluster`).";
      };
      secretMaxAgeDays = mkOption {
        type = types.ints.positive;
        default = 90;
        description = "A Secret older than this many days is reported (rotation policy).";
      };
      intervals = mkOption {
        type = types.attrsOf types.ints.positive;
        default = { };
        example = { kube-rbac = 60; full = 3600; };
        description = ''
          Seconds between runs of each cluster check (kube-network-policies, kube-rbac,
          kube-secrets, kube-resources, kube-cronjobs, kube-env, kube-spec, kube-manifests,
          kube-orphans, full). Unset checks keep their defaults: NetworkPolicies, RBAC and Secrets
          5 min; resources and HPAs 15 min; CronJobs, env, spec and manifests 1 h; the full
          reconciliation 6 h; orphans daily.
        '';
      };
      autoRemediate = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Revert low-severity cluster drift by server-side apply of the manifest (dry run first,
          re-checked after). Everything else stays a finding with the kubectl command to run.
        '';
      };
    };

    settings = mkOption {
      type = settingsFormat.type;
      default = { };
      example = { severity."etc/*" = "low"; };
      description = "Freeform configuration merged over the options above and rendered as /etc/nixdrift/config.yaml.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.hostName != "";
        message = "services.nixdrift.hostName is empty: set networking.hostName or services.nixdrift.hostName.";
      }
      {
        assertion = cfg.flakeOutputs == null || (cfg.flakeOutputs.nixosConfigurations or { }) ? ${cfg.hostName};
        message = "services.nixdrift: the flake has no nixosConfigurations.${cfg.hostName} (it has: "
          + lib.concatStringsSep ", " (builtins.attrNames (cfg.flakeOutputs.nixosConfigurations or { }))
          + "); set services.nixdrift.hostName to the entry that builds this host.";
      }
      {
        assertion = !cfg.kube.enable || cfg.kube.manifests != null;
        message = "services.nixdrift.kube.enable is set but services.nixdrift.kube.manifests is not: name the directory of the cluster's manifests.";
      }
    ];

    environment.systemPackages = [ cfg.package ];
    systemd.tmpfiles.rules = [ "d ${cfg.reportDir} 0750 root root -" ];
    environment.etc."nixdrift/config.yaml".source = configFile;

    systemd.services.nixdrift = {
      description = "nixdrift: drift between this host and its flake";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" "nix-daemon.socket" ];
      path = servicePath;
      restartTriggers = [ configFile ];
      serviceConfig = hardening // {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${cfg.package}/bin/nixdrift daemon --config /etc/nixdrift/config.yaml --state-dir ${stateDir}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        WatchdogSec = "120s";
        Restart = "on-failure";
        RestartSec = "10s";
        TimeoutStopSec = "10s";
        StateDirectory = "nixdrift";
        StateDirectoryMode = "0750";
      };
    };

    systemd.services.nixdrift-report = {
      description = "nixdrift: write the drift report";
      path = servicePath;
      serviceConfig = hardening // {
        Type = "oneshot";
        ExecStart = "${cfg.package}/bin/nixdrift report --config /etc/nixdrift/config.yaml --state-dir ${stateDir} --out ${cfg.reportDir}";
        # exit 1 means "drift found", which the report records; only 2 is a failure
        SuccessExitStatus = "0 1";
        StateDirectory = "nixdrift";
      };
    };

    systemd.timers.nixdrift-report = {
      description = "nixdrift: daily drift report";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.schedule;
        Persistent = true;
        RandomizedDelaySec = "10m";
      };
    };
  };
}
