#!/bin/bash
# The pre-receive hook of every app repository. `git http-backend` (or `git receive-pack` behind
# the SSH front) runs it with the pushed refs on stdin and Quai's callback address in its
# environment. For the deploy branch it archives the pushed commit (still in git's quarantine),
# streams it to Quai with curl, and relays the deployment's output to the pusher line by line;
# its exit code accepts or refuses the push. Bash and curl start in milliseconds, where a Node.js
# hook cost a tenth of a second on every push.
set -uo pipefail

if [[ -z ${QUAI_HOOK_URL:-} || -z ${QUAI_HOOK_TOKEN:-} ]]; then
  echo "Quai: this repository only accepts pushes through Quai's git front"
  exit 1
fi

zero='^0+$'
deploy_sha="" deploy_ref=""
while read -r old new ref; do
  [[ -n ${ref:-} ]] || continue
  if [[ ($ref == refs/heads/main || $ref == refs/heads/master) && ! $new =~ $zero ]]; then
    if [[ -n $deploy_sha ]]; then
      echo "Quai: push main or master, not both at once"
      exit 1
    fi
    # Pushes to an app take turns (Quai's git front): one that landed while this one waited has
    # moved the branch, and git would refuse this one's update after its deployment went live.
    head="$(git rev-parse -q --verify "$ref^{commit}" 2>/dev/null)" || head=""
    if [[ ${head:-0} != "$old" && ! ( -z $head && $old =~ $zero ) ]]; then
      echo "Quai: ${ref#refs/heads/} moved while this push waited for the one before it: fetch, merge and push again"
      exit 1
    fi
    deploy_sha="$new" deploy_ref="$ref"
  elif [[ $new =~ $zero ]]; then
    echo "Quai: $ref deleted."
  else
    echo "Quai: ${ref/#refs\/heads\//branch } stored; only main or master deploys."
  fi
done
[[ -n $deploy_sha ]] || exit 0
[[ $deploy_sha =~ ^[0-9a-f]{40,64}$ ]] || { echo "Quai: unexpected object name $deploy_sha"; exit 1; }

status_file="$(mktemp)"
trap 'rm -f "$status_file"' EXIT
# -T - streams the archive (chunked) instead of reading it whole first; -N relays each line as it
# comes. The outcome comes last, on a line of its own after a NUL: sed keeps it apart.
git archive --format=tar.gz --prefix=app/ "$deploy_sha" |
  curl --silent --show-error --no-buffer -X POST -T - \
    -H "authorization: Bearer $QUAI_HOOK_TOKEN" -H "content-type: application/gzip" -H "expect:" \
    "$QUAI_HOOK_URL?ref=${deploy_ref//\//%2F}&sha=$deploy_sha" 2>&1 |
  sed -u -n -e '/^\x00/{s/^\x00//;w '"$status_file" -e 'd;}' -e p
codes=("${PIPESTATUS[@]}")
if [[ ${codes[1]} != 0 ]]; then
  echo "Quai: the deployment could not be started (curl exited with ${codes[1]})"
  exit 1
fi
[[ "$(head -n 1 "$status_file")" == success ]]
