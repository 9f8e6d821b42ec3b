; Inno Setup 6 script: the Windows installer of ResNet App (per-user by default, no admin rights needed).
; Built by packaging/windows/build.ps1 after PyInstaller has made build\packaging\pyinstaller-dist\resnet-app:
;   iscc /DAppVersion=0.1.0 /DVariant=cpu packaging\windows\resnet-app.iss
; NOT RUN on the Linux machine this was written on; CI runs it (packaging/ci/build-installers.yml).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef Variant
  #define Variant "cpu"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\build\packaging\pyinstaller-dist\resnet-app"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\packaging\resnet-app.ico"
#endif

[Setup]
AppId={{5E0C2A47-9B3E-4C51-A7B6-2F0D8E6C1A93}
AppName=ResNet App
AppVersion={#AppVersion}
AppVerName=ResNet App {#AppVersion}
AppPublisher=ResNet App developers
DefaultDirName={autopf}\ResNet App
DefaultGroupName=ResNet App
DisableProgramGroupPage=yes
; Installs for the current user without asking for admin rights; "install for all users" is offered.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=resnet-app-{#AppVersion}-windows-x64-{#Variant}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\ResNet App.exe
UninstallDisplayName=ResNet App
WizardStyle=modern
ChangesEnvironment=yes
; lzma2/fast: the CPU build packs in a few minutes. The NVIDIA build is ~4-5 GB, past what one setup
; .exe can hold: it is split into setup.exe + .bin slices next to it (ship them together).
Compression=lzma2/fast
SolidCompression=no
#if Variant == "cuda"
DiskSpanning=yes
DiskSliceSize=max
#endif

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the resnet-app command to PATH (for the command line)"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\ResNet App"; Filename: "{app}\ResNet App.exe"; Comment: "Classify images and train ResNet18"
Name: "{autodesktop}\ResNet App"; Filename: "{app}\ResNet App.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\ResNet App.exe"; Description: "{cm:LaunchProgram,ResNet App}"; Flags: nowait postinstall skipifsilent

[Code]
// PATH entry for resnet-app.exe (the console executable), added and removed for the user who installs.
const EnvKey = 'Environment';

function PathHas(Dir: string): Boolean;
var Paths: string;
begin
  if not RegQueryStringValue(HKCU, EnvKey, 'Path', Paths) then Paths := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') > 0;
end;

procedure CurStepChanged(CurStep: TSetupStep);
var Paths: string;
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') and not PathHas(ExpandConstant('{app}')) then
  begin
    if not RegQueryStringValue(HKCU, EnvKey, 'Path', Paths) then Paths := '';
    if (Paths <> '') and (Copy(Paths, Length(Paths), 1) <> ';') then Paths := Paths + ';';
    RegWriteExpandStringValue(HKCU, EnvKey, 'Path', Paths + ExpandConstant('{app}'));
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var Paths, Dir: string; P: Integer;
begin
  if CurUninstallStep = usPostUninstall then
  begin
    Dir := ExpandConstant('{app}');
    if RegQueryStringValue(HKCU, EnvKey, 'Path', Paths) then
    begin
      P := Pos(';' + Uppercase(Dir), ';' + Uppercase(Paths));
      if P > 0 then
      begin
        Delete(Paths, P, Length(Dir) + 1);
        RegWriteExpandStringValue(HKCU, EnvKey, 'Path', Paths);
      end;
    end;
  end;
end;
