#!/usr/bin/env bash
# Fetch the real speech that Debian packages carry (see ../shared/data/SOURCES.md) and lay it out as
# one folder per source with one subfolder per speaker (or language, where speakers are not labelled):
#   OUT/sources/<source>/<speaker>/<file>   (symbolic links into OUT/root)
# Usage: fetch.sh OUT
set -euo pipefail
out=${1:?usage: fetch.sh OUT}
mkdir -p "$out/debs" "$out/root" "$out/sources"
out=$(cd "$out" && pwd)
packages="festvox-ru fillets-ng-data-cs fillets-ng-data-nl tuxpaint-stamps-default klettres-data ktuberling-data"
(cd "$out/debs" && apt-get download $packages)
for deb in "$out"/debs/*.deb; do dpkg -x "$deb" "$out/root"; done
share="$out/root/usr/share"

link() {  # link SOURCE SPEAKER FILE
    local dir="$out/sources/$1/$2"
    mkdir -p "$dir"
    ln -sf "$3" "$dir/$(echo "${3#$share/}" | tr '/' '_')"
}

for f in "$share"/festival/voices/russian/msu_ru_nsh_clunits/wav/*.wav; do link festvox-ru nsh "$f"; done
# fillets: speakers are not labelled; the level (scene) folder stands in for them.
for lang in cs nl; do
    find "$share/games/fillets-ng/sound" -path "*/$lang/*.ogg" | while read -r f; do
        level=$(basename "$(dirname "$(dirname "$f")")")
        link "fillets-$lang" "$level" "$f"
    done
done
# tuxpaint: only the spoken descriptions; the language code stands in for the speaker.
find "$share/tuxpaint/stamps" -name "*_desc_*.ogg" | while read -r f; do
    lang=${f##*_desc_}; link tuxpaint "${lang%.ogg}" "$f"
done
for d in "$share"/klettres/*/; do
    find "$d" -name "*.ogg" | while read -r f; do link klettres "$(basename "$d")" "$f"; done
done
for d in "$share"/ktuberling/sounds/*/; do
    find "$d" \( -name "*.ogg" -o -name "*.opus" -o -name "*.wav" \) | while read -r f; do
        link ktuberling "$(basename "$d")" "$f"
    done
done
echo "sources in $out/sources:"; for s in "$out"/sources/*; do echo "  $(basename "$s"): $(find "$s" -type l | wc -l) files"; done
