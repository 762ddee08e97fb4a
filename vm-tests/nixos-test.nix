# The same scenario as a NixOS VM test, for anyone with Nix and a binary cache:
#   checks.x86_64-linux.vm-drift = pkgs.testers.runNixOSTest (import ./vm-tests/nixos-test.nix { inherit self; });
# The machine enables the module exactly as a user would; scenario.py (shared with the qemu harness
# in harness.py) makes eight imperative changes and waits for each in journald and the report.
{ self }:
{ pkgs, ... }:
let
  # a package that is in the VM's store but not declared: what `nix-env -i` installs imperatively
  rogue = pkgs.hello;
in
{
  name = "nixdrift-drift";

  nodes.machine = { config, ... }: {
    imports = [ self.nixosModules.default ];

    # the same declarations as flake/vmhost.nix, the flake this machine's nixdrift evaluates
    networking.nameservers = [ "10.0.2.3" ];
    networking.nftables.enable = true;
    networking.firewall.allowedTCPPorts = [ 22 ];
    users.users.alice = { isNormalUser = true; uid = 1000; };
    users.groups.deploy = { gid = 2000; };
    environment.systemPackages = [ pkgs.python3 pkgs.git ];
    system.extraDependencies = [ rogue ];
    nix.settings.substituters = [ ];

    services.nixdrift = {
      enable = true;
      # the VM cannot evaluate its own configuration offline (no nixpkgs in the guest): it
      # evaluates the miniature NixOS in ./flake, copied to /etc/nixos by the test script
      hostName = "vmhost";
      alertThreshold = "low";
      # the same intervals as units.py gives the qemu harness
      intervals = { firewall = 15; exposure = 15; mounts = 15; services = 30; packages = 60; };
      # the scenario's last step: this low-severity drift with a safe revert is reverted by the service
      autoRemediate = true;
      settings.severity."etc/nixdrift-vm/motd" = "low";
    };
    environment.etc."nixdrift-vm/motd".text = "Managed by the flake in /etc/nixos.\n";
    # declared, but nothing wants it: the scenario starts it by hand
    systemd.services.nixdrift-vm-idle = {
      description = "declared but not wanted";
      serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
    };
  };

  testScript = ''
    import importlib.util

    spec = importlib.util.spec_from_file_location("scenario", "${./scenario.py}")
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)

    machine.wait_for_unit("multi-user.target")
    machine.succeed(
        "mkdir -p /etc/nixos && cp ${./flake}/* /etc/nixos/ && chmod -R u+w /etc/nixos",
        "cd /etc/nixos && git init -q && git add -A"
        " && git -c user.name=test -c user.email=test@example.invalid commit -q -m vmhost",
        "systemctl restart nixdrift.service",
    )
    machine.wait_for_unit("nixdrift.service")
    # what the flake does not declare about this VM is accepted as the baseline
    machine.succeed("nixdrift accept --all --reason baseline --state-dir /var/lib/nixdrift")
    timings = scenario.run(machine, package="${rogue}")
    for step, finding, seconds in timings:
        print(f"{seconds:5.1f} s  {finding}  ({step})")
  '';
}
