#!/bin/sh
# Adds ResNet App (this unpacked folder) to your desktop's application menu, for you only.
# Run it again after moving the folder; run it with --remove to take the entry out again.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$DATA/applications/resnet-app.desktop"
    find "$DATA/icons/hicolor" -name 'resnet-app.*' -delete 2>/dev/null || true
    echo "ResNet App removed from the menu (this folder was left as it is)."
    exit 0
fi
mkdir -p "$DATA/applications"
sed -e "s|^Exec=.*|Exec=\"$HERE/resnet-app\"|" -e "s|^TryExec=.*||" \
    "$HERE/share/applications/resnet-app.desktop" > "$DATA/applications/resnet-app.desktop"
(cd "$HERE/share" && find icons -type f) | while read -r icon; do
    mkdir -p "$DATA/$(dirname "$icon")"
    cp "$HERE/share/$icon" "$DATA/$icon"
done
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA/applications" || true
echo "ResNet App is in your application menu now."
