# Windows build of ResNet App: PyInstaller one-folder bundle + Inno Setup installer.
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 -Variant cpu|cuda [-ImagenetWeights PATH]
# Needs: Python 3.11 (64-bit), Inno Setup 6 (iscc.exe on PATH or in its default folder), a network.
# Makes: dist\resnet-app-<version>-windows-x64-<variant>-setup.exe (+ .bin slices for cuda).
# NOT RUN on the Linux machine this was written on; CI runs it (packaging/ci/build-installers.yml).
param(
    [ValidateSet("cpu", "cuda")] [string] $Variant = "cpu",
    [string] $ImagenetWeights = "",
    [string] $TorchIndex = ""
)
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $Root
$Build = Join-Path $Root "build\packaging"
New-Item -ItemType Directory -Force $Build, (Join-Path $Root "dist") | Out-Null

# torch: PyPI's Windows wheel is CPU-only; the NVIDIA build comes from the PyTorch CUDA index.
if (-not $TorchIndex) {
    $TorchIndex = if ($Variant -eq "cuda") { "https://download.pytorch.org/whl/cu130" } else { "https://download.pytorch.org/whl/cpu" }
}
$Venv = Join-Path $Root "build\venv-$Variant"
if (-not (Test-Path "$Venv\Scripts\python.exe")) { py -3.11 -m venv $Venv }
$Py = "$Venv\Scripts\python.exe"
& $Py -m pip install --upgrade pip
& $Py -m pip install torch torchvision --index-url $TorchIndex
& $Py -m pip install -e . -r packaging\requirements-build.txt
if ($LASTEXITCODE) { throw "pip failed" }

$Version = & $Py -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])"
$TorchInfo = & $Py -c "import torch; print(torch.__version__, torch.version.cuda or 'none')"
$Torch, $Cuda = $TorchInfo -split " "
if (($Variant -eq "cuda") -ne ($Cuda -ne "none")) { throw "torch $Torch (CUDA $Cuda) does not make the $Variant variant" }

$env:RESNET_APP_VARIANT = $Variant
$env:RESNET_APP_WEIGHTS_DIR = ""
if ($ImagenetWeights) {
    $W = Join-Path $Build "weights"; New-Item -ItemType Directory -Force $W | Out-Null
    # torchvision's release (known by its whole SHA-256) under its own name; other weights under the
    # name the app looks for them by (resnet_app/frozen.py OTHER_WEIGHTS_FILE).
    $WName = & $Py -c "import sys; from resnet_app.core.model import release; from resnet_app import frozen; print(release.RELEASE_NAME if release.file_sha256(sys.argv[1]) == release.RELEASE_SHA256 else frozen.OTHER_WEIGHTS_FILE)" $ImagenetWeights
    Copy-Item $ImagenetWeights (Join-Path $W $WName)
    $env:RESNET_APP_WEIGHTS_DIR = $W
}
$Info = Join-Path $Build "BUILD_INFO.json"
@{ name = "resnet-app"; version = $Version; variant = $Variant; torch = $Torch; cuda = $Cuda;
   imagenet_weights = $(if ($ImagenetWeights) { "bundled" } else { "none" }); platform = "windows-x64" } |
    ConvertTo-Json | Set-Content -Encoding utf8 $Info
$env:RESNET_APP_BUILD_INFO = $Info

# The installer's icon (PyInstaller converts the PNG for the executables itself).
& $Py -c "from PIL import Image; Image.open('resnet_app/resources/resnet-app-256.png').save(r'$Build\resnet-app.ico', sizes=[(16,16),(24,24),(32,32),(48,48),(64,64),(128,128),(256,256)])"

$Start = Get-Date
& $Py -m PyInstaller --noconfirm --log-level WARN --distpath "$Build\pyinstaller-dist" --workpath "$Build\pyinstaller-work" packaging\resnet-app.spec
if ($LASTEXITCODE) { throw "PyInstaller failed" }
& "$Build\pyinstaller-dist\resnet-app\resnet-app.exe" --help | Out-Null
if ($LASTEXITCODE) { throw "the frozen resnet-app.exe does not start" }
$env:QT_QPA_PLATFORM = "offscreen"
& "$Build\pyinstaller-dist\resnet-app\resnet-app.exe" selftest
if ($LASTEXITCODE) { throw "the frozen app's selftest failed" }
Remove-Item Env:QT_QPA_PLATFORM

$Iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $Iscc "/DAppVersion=$Version" "/DVariant=$Variant" packaging\windows\resnet-app.iss
if ($LASTEXITCODE) { throw "Inno Setup failed" }
$Size = "{0:N0}" -f ((Get-ChildItem -Recurse "$Build\pyinstaller-dist\resnet-app" | Measure-Object Length -Sum).Sum / 1MB)
"ResNet App $Version $Variant: bundle $Size MiB, built in $([int]((Get-Date) - $Start).TotalSeconds) s" |
    Tee-Object -FilePath "dist\build-summary-windows-$Variant.txt"
