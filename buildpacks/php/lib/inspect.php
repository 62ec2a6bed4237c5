<?php
// Reads composer.json / composer.lock for bin/compile, so the shell never parses JSON.
// Usage: php inspect.php <command> BUILD_DIR [CACHE_DIR]
// Prints one result per line on stdout; problems are one line each on stdout with exit code 1,
// and compile prefixes them with " !     ". Exit code 2 means the helper itself failed.

declare(strict_types=1);

function fail(array $problems): never
{
    foreach ($problems as $p) {
        echo $p, "\n";
    }
    exit(1);
}

function readJson(string $file, bool $required): ?array
{
    if (!is_file($file)) {
        if ($required) {
            fail([basename($file) . ' not found']);
        }
        return null;
    }
    try {
        $data = json_decode((string) file_get_contents($file), true, 512, JSON_THROW_ON_ERROR);
    } catch (JsonException $e) {
        fail([basename($file) . ' is not valid JSON: ' . $e->getMessage()]);
    }
    if (!is_array($data)) {
        fail([basename($file) . ' must hold a JSON object']);
    }
    return $data;
}

/** Whether a requirement is a platform package (php, ext-*, lib-*, composer-*-api), not one to install. */
function isPlatform(string $name): bool
{
    return (bool) preg_match('{^(php(-64bit|-ipv6|-zts|-debug)?|hhvm|(ext|lib)-.+|composer(-(plugin|runtime)-api)?)$}i', $name);
}

/** Loads composer/semver from the system's composer (Debian layout, or inside a composer.phar). */
function loadSemver(): bool
{
    if (class_exists('Composer\\Semver\\Semver')) {
        return true;
    }
    $candidates = ['/usr/share/php/Composer/Semver/autoload.php'];
    // A composer.phar carries composer/semver in its own vendor/ (is_file is false otherwise).
    $composer = realpath(getenv('QUAI_COMPOSER_BIN') ?: '/usr/bin/composer');
    if ($composer !== false) {
        $candidates[] = 'phar://' . $composer . '/vendor/autoload.php';
    }
    foreach ($candidates as $file) {
        if (@is_file($file)) {
            require_once $file;
            if (class_exists('Composer\\Semver\\Semver')) {
                return true;
            }
        }
    }
    return false;
}

/** The extension names composer uses ("ext-zend-opcache"), from what this PHP has loaded. */
function loadedExtensions(): array
{
    $names = [];
    foreach (array_merge(get_loaded_extensions(), get_loaded_extensions(true)) as $ext) {
        $names['ext-' . strtolower(str_replace(' ', '-', $ext))] = true;
    }
    ksort($names);
    return $names;
}

function runtimePhpVersion(): string
{
    return PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION . '.' . PHP_RELEASE_VERSION;
}

/**
 * Checks `php` and `ext-*` requirements of the root package and of every locked (non-dev)
 * package against the PHP that will run the app.
 */
function cmdPlatform(string $buildDir): void
{
    $root = readJson("$buildDir/composer.json", true);
    $lock = readJson("$buildDir/composer.lock", false);
    $sources = [['composer.json', $root['require'] ?? []]];
    foreach ($lock['packages'] ?? [] as $pkg) {
        $sources[] = [($pkg['name'] ?? '?') . ' (composer.lock)', $pkg['require'] ?? []];
    }
    $haveSemver = loadSemver();
    $extensions = loadedExtensions();
    $version = runtimePhpVersion();
    $problems = [];
    foreach ($sources as [$who, $require]) {
        if (!is_array($require)) {
            continue;
        }
        foreach ($require as $name => $constraint) {
            $name = strtolower((string) $name);
            if ($name === 'php' || $name === 'php-64bit') {
                if (!$haveSemver) {
                    continue;
                }
                try {
                    $ok = Composer\Semver\Semver::satisfies($version, (string) $constraint);
                } catch (Throwable $e) {
                    $problems[] = "$who: cannot read the PHP constraint \"$constraint\": " . $e->getMessage();
                    continue;
                }
                if (!$ok) {
                    $problems[] = "$who requires PHP $constraint, but the available PHP is $version (only this version is installed on Quai's build and run hosts)";
                }
            } elseif (str_starts_with($name, 'ext-') && !isset($extensions[$name])) {
                $problems[] = "$who requires the PHP extension " . substr($name, 4) . " ($name), which is not available; loaded extensions: "
                    . implode(' ', array_map(fn ($e) => substr($e, 4), array_keys($extensions)));
            }
        }
    }
    if ($problems) {
        fail($problems);
    }
    echo "PHP $version", $haveSemver ? '' : ' (composer/semver not found: PHP constraint not checked)', "\n";
}

/** Exit 0 when `composer install` has something to do: packages to install or an autoloader to write. */
function cmdNeedsInstall(string $buildDir): void
{
    $root = readJson("$buildDir/composer.json", true);
    foreach (array_keys(is_array($root['require'] ?? null) ? $root['require'] : []) as $name) {
        if (!isPlatform((string) $name)) {
            exit(0);
        }
    }
    exit(empty($root['autoload']) ? 3 : 0);
}

function paas(string $buildDir): array
{
    $root = readJson("$buildDir/composer.json", false) ?? [];
    $paas = $root['extra']['paas'] ?? [];
    return is_array($paas) ? $paas : [];
}

/** A relative path inside the app, safe to write into nginx's config (no quoting needed). */
function safeRelative(string $path): ?string
{
    $path = trim($path);
    $path = preg_replace('#^\./+#', '', $path) ?? $path;
    $path = rtrim($path, '/');
    if ($path === '' || $path === '.') {
        return '.';
    }
    if (str_starts_with($path, '/') || !preg_match('#^[A-Za-z0-9._/@+-]+$#', $path)) {
        return null;
    }
    foreach (explode('/', $path) as $part) {
        if ($part === '..') {
            return null;
        }
    }
    return $path;
}

/** Prints the document root relative to the app (extra.paas.document-root, else public/ when it exists, else "."). */
function cmdDocumentRoot(string $buildDir): void
{
    $paas = paas($buildDir);
    if (isset($paas['document-root'])) {
        $rel = is_string($paas['document-root']) ? safeRelative($paas['document-root']) : null;
        if ($rel === null) {
            fail(['extra.paas.document-root must be a relative path inside the app (letters, digits, . _ - / only), got ' . json_encode($paas['document-root'])]);
        }
        if (!is_dir("$buildDir/$rel")) {
            fail(["extra.paas.document-root is \"$rel\", but the app has no such directory"]);
        }
        echo $rel, "\n";
        return;
    }
    echo is_dir("$buildDir/public") ? 'public' : '.', "\n";
}

/** Prints extra.paas.nginx-includes, one relative path a line, each checked to exist. */
function cmdNginxIncludes(string $buildDir): void
{
    $includes = paas($buildDir)['nginx-includes'] ?? [];
    if (is_string($includes)) {
        $includes = [$includes];
    }
    if (!is_array($includes)) {
        fail(['extra.paas.nginx-includes must be a list of files']);
    }
    $problems = [];
    $out = [];
    foreach ($includes as $inc) {
        $rel = is_string($inc) ? safeRelative($inc) : null;
        if ($rel === null || $rel === '.') {
            $problems[] = 'extra.paas.nginx-includes: ' . json_encode($inc) . ' must be a relative file path inside the app (letters, digits, . _ - / only)';
        } elseif (!is_file("$buildDir/$rel")) {
            $problems[] = "extra.paas.nginx-includes: the file \"$rel\" does not exist";
        } else {
            $out[] = $rel;
        }
    }
    if ($problems) {
        fail($problems);
    }
    foreach ($out as $rel) {
        echo $rel, "\n";
    }
}

/** Names of the packages that path repositories of composer.json provide. */
function pathRepositoryPackages(string $buildDir, array $root): array
{
    $names = [];
    foreach ($root['repositories'] ?? [] as $repo) {
        if (!is_array($repo) || ($repo['type'] ?? '') !== 'path' || !is_string($repo['url'] ?? null)) {
            continue;
        }
        $url = str_starts_with($repo['url'], '/') ? $repo['url'] : "$buildDir/{$repo['url']}";
        foreach (glob($url, GLOB_ONLYDIR | (defined('GLOB_BRACE') ? GLOB_BRACE : 0)) ?: [] as $dir) {
            $pkg = json_decode((string) @file_get_contents("$dir/composer.json"), true);
            if (is_array($pkg) && is_string($pkg['name'] ?? null)) {
                $names[strtolower($pkg['name'])] = true;
            }
        }
    }
    return $names;
}

/** After a failed install: which packages can be had neither from vendor/, a path repository nor the cache. */
function cmdMissing(string $buildDir, string $cacheDir): void
{
    $root = readJson("$buildDir/composer.json", true);
    $lock = readJson("$buildDir/composer.lock", false);
    $fromPaths = pathRepositoryPackages($buildDir, $root);
    $missing = [];
    if ($lock !== null) {
        foreach ($lock['packages'] ?? [] as $pkg) {
            $name = strtolower((string) ($pkg['name'] ?? ''));
            $dist = $pkg['dist'] ?? [];
            if (($dist['type'] ?? '') === 'path') {
                $url = (string) ($dist['url'] ?? '');
                if (!is_dir(str_starts_with($url, '/') ? $url : "$buildDir/$url")) {
                    $missing[] = "$name {$pkg['version']}: its path repository \"$url\" is not in the app";
                }
                continue;
            }
            $vendored = is_dir("$buildDir/vendor/$name") && count(scandir("$buildDir/vendor/$name") ?: []) > 2;
            $cached = glob("$cacheDir/composer/cache/files/$name/*") ?: [];
            if (!$vendored && !$cached) {
                $missing[] = "$name {$pkg['version']}: not in vendor/, not in a path repository, not in the build cache";
            }
        }
    } else {
        foreach ($root['require'] ?? [] as $name => $constraint) {
            $name = strtolower((string) $name);
            if (!isPlatform($name) && !isset($fromPaths[$name])) {
                $missing[] = "$name $constraint: no composer.lock, and no path repository provides it";
            }
        }
    }
    fail($missing ?: ['composer install failed (see its output above)']);
}

[, $command, $buildDir] = $argv + [null, null, null];
if (!is_string($command) || !is_string($buildDir)) {
    fwrite(STDERR, "usage: php inspect.php platform|needs-install|document-root|nginx-includes|missing BUILD_DIR [CACHE_DIR]\n");
    exit(2);
}
match ($command) {
    'platform' => cmdPlatform($buildDir),
    'needs-install' => cmdNeedsInstall($buildDir),
    'document-root' => cmdDocumentRoot($buildDir),
    'nginx-includes' => cmdNginxIncludes($buildDir),
    'missing' => cmdMissing($buildDir, (string) ($argv[3] ?? '')),
    default => (function () use ($command): never {
        fwrite(STDERR, "inspect.php: unknown command $command\n");
        exit(2);
    })(),
};
