#!/usr/bin/env bash
# Fetch the real speech that Debian packages carry (README.md lists the packages) and lay it out as
# one folder per source with one subfolder per speaker (or language, where speakers are not labelled):
#   OUT/sources/<source>/<speaker>/<file>   (symbolic links into OUT/root, or files decoded from it)
# Needs ffmpeg (G.722 and the MP3 speech of flight-of-the-amazon-queen). Usage: fetch.sh OUT
set -euo pipefail
out=${1:?usage: fetch.sh OUT}
command -v ffmpeg > /dev/null || { echo "fetch.sh: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/debs" "$out/root" "$out/sources"
out=$(cd "$out" && pwd)
packages="festvox-ru fillets-ng-data-cs fillets-ng-data-nl tuxpaint-stamps-default klettres-data ktuberling-data
    beneath-a-steel-sky flight-of-the-amazon-queen nexuiz-data fillets-ng-data kajongg asterisk-prompt-it-menardi-wav
    asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722
    asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722"
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
for lang in cs nl en; do
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

# The two games' archives: readers beside this file (the formats are described in them).
python3 "$here/sky.py" "$share/scummvm/beneath-a-steel-sky" "$out/sources/steel-sky"
python3 "$here/queen.py" "$share/scummvm/flight-of-the-amazon-queen/queen.1c" "$out/sources/queen"
# Asterisk: one source per language, the voice folder (language, sex, name) is the speaker; G.722 at 16 kHz
# decoded to WAV. silence/ holds silence. The 8 kHz Menardi prompts are PCM WAV already.
for voice in en_US_f_Allison es_MX_f_Allison fr_CA_f_June it_IT_m_Carlo ru_RU_f_IvrvoiceRU; do
    dir="$out/sources/asterisk-${voice%%_*}/$voice"
    mkdir -p "$dir"
    find "$share/asterisk/sounds/$voice" -name "*.g722" -not -path "*/silence/*" | while read -r f; do
        rel=${f#$share/asterisk/sounds/$voice/}
        ffmpeg -nostdin -v error -threads 1 -f g722 -i "$f" -c:a pcm_s16le -y "$dir/$(echo "${rel%.g722}" | tr '/' '_').wav"
    done
done
find "$share/asterisk/sounds/it_IT_f_Menardi" -name "*.wav" -not -path "*/silence/*" | while read -r f; do
    link asterisk-8k it_IT_f_Menardi "$f"
done
# nexuiz: the tutorial narrator, each player model's spoken commands, the male announcer (inside a zip).
python3 - "$share/games/nexuiz/data/data.pk3" "$out/sources/nexuiz" <<'PY'
import re, sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1]) as pk3:
    for name in pk3.namelist():
        m = re.fullmatch(r"sound/(?:(tutorial)|player/([^/]+)/coms|announcer/(male))/(.+\.ogg)", name)
        if m:
            speaker = m[1] or m[2] or "announcer-male"
            path = Path(sys.argv[2], speaker, m[4].replace("/", "_"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pk3.read(name))
PY
# kajongg: four English voices, four German ones.
for d in "$share"/kajongg/voices/*/; do
    case $(basename "$d") in de) continue ;; esac
    for f in "$d"*.ogg; do link kajongg "en-$(basename "$d")" "$f"; done
done
for d in "$share"/kajongg/voices/de/*/; do
    for f in "$d"*.ogg; do link kajongg "de-$(basename "$d")" "$f"; done
done
echo "sources in $out/sources:"; for s in "$out"/sources/*; do echo "  $(basename "$s"): $(find "$s" \( -type l -o -type f \) | wc -l) files"; done
