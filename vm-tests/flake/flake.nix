# The guest's own configuration, in /etc/nixos of the VM: a NixOS-shaped `config` built by a
# miniature NixOS (nixos.nix) with the guest's real nix. No nixpkgs: every derivation has /bin/sh
# as its builder (the guest's nix runs with the sandbox off).
{
  description = "nixdrift VM guest";
  outputs = { self }: {
    nixosConfigurations.vmhost = import ./nixos.nix { system = "x86_64-linux"; } (import ./vmhost.nix);
  };
}
