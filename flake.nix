{
  description = "nixdrift: find where a NixOS host has drifted from the flake that declares it";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      package = pkgs: pkgs.python3Packages.buildPythonApplication {
        pname = "nixdrift";
        version = "0.1.0";
        pyproject = true;
        src = self;
        build-system = [ pkgs.python3Packages.setuptools ];
        dependencies = with pkgs.python3Packages; [
          psutil pyyaml gitpython watchdog sdnotify jeepney kubernetes
        ];
        nativeCheckInputs = with pkgs.python3Packages; [ pytestCheckHook hypothesis jsonschema ]
          ++ [ pkgs.nix pkgs.git ];
        # the integration tier builds real store paths, which the build sandbox cannot
        pytestFlagsArray = [ "tests/unit" ];
        makeWrapperArgs = [ "--prefix" "PATH" ":" (pkgs.lib.makeBinPath [ pkgs.git ]) ];
        meta = {
          description = "Declared-vs-live drift detection for NixOS hosts";
          mainProgram = "nixdrift";
          license = pkgs.lib.licenses.mit;
          platforms = pkgs.lib.platforms.linux;
        };
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        nixdrift = package pkgs;
        default = nixdrift;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.system}.default}/bin/nixdrift";
        };
      });

      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nixos-module ];
        services.nixdrift.package = lib.mkDefault self.packages.${pkgs.system}.default;
      };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.system}.default;
        lint = pkgs.runCommand "nixdrift-lint" { nativeBuildInputs = [ pkgs.ruff pkgs.nix ]; } ''
          cd ${self}
          export NIX_STATE_DIR=$TMPDIR/nix
          ruff check --no-cache daemon tests benchmarks vm-tests
          ruff format --check --no-cache daemon tests benchmarks vm-tests
          find . -name '*.nix' -print0 | xargs -0 -n1 nix-instantiate --parse > /dev/null
          touch $out
        '';
        typecheck = pkgs.runCommand "nixdrift-mypy"
          {
            nativeBuildInputs = [
              (pkgs.python3.withPackages (ps: with ps; [
                mypy psutil pyyaml gitpython watchdog sdnotify jeepney kubernetes types-pyyaml types-psutil
              ]))
            ];
          } ''
          cd ${self}
          mypy --cache-dir "$TMPDIR/mypy"
          touch $out
        '';
        vm-drift = pkgs.testers.runNixOSTest (import ./vm-tests/nixos-test.nix { inherit self; });
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.default ];
          packages = [ pkgs.ruff pkgs.python3Packages.mypy pkgs.just pkgs.nix pkgs.git pkgs.aide pkgs.inotify-tools ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
