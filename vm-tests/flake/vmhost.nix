# What the VM guest declares. The harness's prepare step "activates" it over the Debian guest:
# /run/current-system, /etc/static and its managed links, the users and groups below, the
# resolv.conf these nameservers give, and the nixos-fw nftables ruleset for these ports.
{ pkgs }:
{
  networking.hostName = "vmhost";
  networking.nameservers = [ "10.0.2.3" ];
  networking.nftables.enable = true;
  networking.firewall = { enable = true; allowedTCPPorts = [ 22 ]; allowedUDPPorts = [ ]; };

  users.mutableUsers = true;
  users.users.root = { uid = 0; group = "root"; home = "/root"; shell = "/bin/bash"; };
  users.users.alice = { isNormalUser = true; uid = 1000; group = "users"; home = "/home/alice"; shell = "/bin/bash"; };
  users.groups.deploy = { gid = 2000; members = [ ]; };

  environment.systemPackages = [ (pkgs.mkPkg "hello" "2.12.1") ];
  environment.etc = {
    hostname.text = "vmhost\n";
    "nixdrift-vm/motd".text = "Managed by the flake in /etc/nixos.\n";
    "nixdrift-vm/banner" = { text = "vmhost\n"; mode = "0444"; };
  };

  # declared, but nothing wants it (no wantedBy): the scenario starts it by hand
  systemd.services.nixdrift-vm-idle = {
    description = "declared but not wanted";
    serviceConfig.ExecStart = "/bin/sleep infinity";
  };

  fileSystems."/" = { device = "/dev/vda"; fsType = "ext4"; options = [ "rw" ]; };
  swapDevices = [ ];
  system.nixos.version = "24.11.20250101.0000000";
}
