#!/usr/bin/env bash
# Build the base image for molecule and the lab: Debian 12 with systemd as PID 1, sshd and python3,
# made by debootstrap from this machine's own Debian mirror and trusting this machine's CA bundle.
# The tag carries a content hash of everything that goes into the image, so an unchanged image is
# reused in seconds. The image is tagged only once complete: a failed build leaves no tag behind.
# shellcheck source=tests/harness/lib.sh
source "$(dirname "$0")/lib.sh"

SUITE=bookworm
INCLUDE=python3,python3-apt,systemd,systemd-sysv,dbus,openssh-server,sudo,ca-certificates,iproute2,procps,gnupg
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# The first "deb" mirror configured for the main archive (deb822 .sources or one-line format).
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ /(^| )bookworm( |$)/ && u {print u; exit}' \
          /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  fi
  [ -n "$uri" ] || die "no Debian bookworm mirror found in /etc/apt/sources.list{,.d}: configure one"
  printf '%s\n' "$uri"
}

MIRROR=${GR_DEBIAN_MIRROR:-$(debian_mirror)}   # override: GR_DEBIAN_MIRROR=http://mirror.example/debian
[ -r "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE is not readable"
# One build at a time: make demo and a lane of run-tests.sh may ask at once; the second waits and
# then finds the tag.
exec 9>"$GR_STATE/build-image.lock"
flock 9
HASH=$( { cat "$0"; echo "$MIRROR $SUITE $INCLUDE"; sha256sum "$CA_BUNDLE"; } | sha256sum | cut -c1-12)
TAG="$GR_IMAGE:$HASH"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  docker tag "$TAG" "$GR_IMAGE:latest"
  exit 0
fi

need_cmd debootstrap "apt-get install debootstrap"
need_disk 2000 /var/tmp
work=$(mktemp -d /var/tmp/gradual-rootfs.XXXXXX)
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT

say "building $TAG from $MIRROR (debootstrap, about a minute)"
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/root" "$MIRROR" \
      >"$work/debootstrap.log" 2>&1; then
  if grep -qE "Failed getting release file|Couldn't download|Failure trying to run" "$work/debootstrap.log" \
     && ! grep -q "I: Base system installed" "$work/debootstrap.log"; then
    grep -E "^E:" "$work/debootstrap.log" | tail -n 2 >&2 || true
    die "the Debian mirror $MIRROR cannot be read (set GR_DEBIAN_MIRROR or fix /etc/apt/sources.list.d)"
  fi
  tail -n 5 "$work/debootstrap.log" >&2
  die "debootstrap failed (last lines above)"
fi

root="$work/root"
# Trust what the machine trusts (HTTPS from the containers goes through the same chain).
install -m 0644 "$CA_BUNDLE" "$root/usr/local/share/ca-certificates/gradual-host-bundle.crt"
install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
# Same archive layout as the machine: main, updates and security.
if cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null; then
  : > "$root/etc/apt/sources.list"
fi
printf 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n' \
  > "$root/etc/apt/apt.conf.d/90gradual"
# Each container gets its own identity: machine-id and sshd host keys are made at first boot.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  > "$root/etc/systemd/system/ssh.service.d/keys.conf"
# Units that make no sense in a container.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udevd-kernel.socket \
            systemd-udevd-control.socket systemd-modules-load.service sys-kernel-config.mount \
            sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service \
            systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* \
       "$root"/usr/share/man/*

imgid=$(tar -C "$root" -c . | docker import \
          --change 'CMD ["/lib/systemd/systemd"]' --change 'ENV container=docker' \
          - ) || die "docker import failed"
docker tag "$imgid" "$TAG"
docker tag "$imgid" "$GR_IMAGE:latest"
say "built $TAG"
