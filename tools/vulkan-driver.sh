#!/usr/bin/env bash
# Makes sure a Vulkan driver is present for the wgpu tests: Mesa's lavapipe
# (a software Vulkan 1.3 implementation on the CPU) from the distribution's
# `mesa-vulkan-drivers`, when no Vulkan ICD is installed yet.
set -euo pipefail
if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || ls /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
    echo "vulkan-driver: $(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep json | tr '\n' ' ')"
    exit 0
fi
echo "vulkan-driver: installing mesa-vulkan-drivers (lavapipe)"
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q mesa-vulkan-drivers
