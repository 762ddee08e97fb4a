#!/bin/sh
# Write the kubeconfig a host uses to publish its PolicyReport, from its ServiceAccount token.
#   deploy/make-kubeconfig.sh NAME [NAMESPACE] > web1.kubeconfig
# NAME is the host's object name (the first column of `generate-host-rbac.py` output: usually the
# host name itself). Run it with your own admin kubeconfig; it reads the cluster's address and CA
# from your current context and the token from the Secret nixdrift-host-NAME-token.
set -eu
name=${1:?usage: make-kubeconfig.sh NAME [NAMESPACE]}
ns=${2:-nixdrift}
server=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [ -z "$ca" ]; then
  ca=$(kubectl -n "$ns" get secret "nixdrift-host-$name-token" -o jsonpath='{.data.ca\.crt}')
fi
token=$(kubectl -n "$ns" get secret "nixdrift-host-$name-token" -o jsonpath='{.data.token}' | base64 -d)
[ -n "$token" ] || { echo "make-kubeconfig.sh: no token yet in secret nixdrift-host-$name-token" >&2; exit 1; }
cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: fleet
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: nixdrift-$name
    user:
      token: $token
contexts:
  - name: nixdrift
    context:
      cluster: fleet
      user: nixdrift-$name
      namespace: $ns
current-context: nixdrift
KUBECONFIG
