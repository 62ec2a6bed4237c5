import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RouterError } from "./errors.ts";
import { errorPages, renderNginxConf, type RenderSettings } from "./render.ts";
import type { RouteApp, RouterState } from "./types.ts";

const testdata = new URL("./testdata/", import.meta.url).pathname;
const update = process.env.UPDATE_GOLDEN === "1";

interface GoldenInput {
  description: string;
  state: RouterState;
  settings: RenderSettings;
}

const load = (name: string) => JSON.parse(readFileSync(join(testdata, `${name}.input.json`), "utf8")) as GoldenInput;

describe("renderNginxConf golden files (UPDATE_GOLDEN=1 rewrites them)", () => {
  const cases = readdirSync(testdata)
    .filter((f) => f.endsWith(".input.json"))
    .map((f) => f.slice(0, -".input.json".length))
    .sort();
  assert.ok(cases.length >= 3);
  for (const name of cases) {
    it(`${name}: ${load(name).description}`, () => {
      const input = load(name);
      const got = renderNginxConf(input.state, input.settings);
      const file = join(testdata, `${name}.expected.conf`);
      if (update) writeFileSync(file, got);
      assert.equal(got, readFileSync(file, "utf8"));
    });
  }
});

describe("renderNginxConf", () => {
  const base = load("apps");
  const app = (over: Partial<RouteApp>): RouteApp => ({ name: "web", hostnames: [], backends: [{ host: "127.0.0.1", port: 3000 }], accessLog: "/srv/web.log", ...over });
  const render = (apps: RouteApp[], settings: Partial<RenderSettings> = {}, domain = "localhost") =>
    renderNginxConf({ domain, apps }, { ...base.settings, ...settings });
  const refuses = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (err: unknown) => err instanceof RouterError && err.reason === "invalid-state" && pattern.test(err.message));

  it("lists incoming backends first-choice and never failed, the serving ones as backups", () => {
    const conf = render([app({ backends: [{ host: "127.0.0.1", port: 3001, role: "incoming" }, { host: "127.0.0.1", port: 3002, role: "incoming" }, { host: "127.0.0.1", port: 3000, role: "backup" }, { host: "127.0.0.1", port: 2999, role: "backup" }] })]);
    assert.match(conf, /server 127\.0\.0\.1:3001 max_fails=0;\n\s+server 127\.0\.0\.1:3002 max_fails=0;\n\s+server 127\.0\.0\.1:3000 backup;\n\s+server 127\.0\.0\.1:2999 backup;/);
    // Two incoming may refuse before a backup answers: room for every backend.
    assert.match(conf, /proxy_next_upstream_tries 4;\n\s+proxy_pass http:\/\/quai_app_web;/);
    assert.doesNotMatch(render([app({})]), /max_fails|backup;|proxy_next_upstream_tries 4/);
    refuses(() => render([app({ backends: [{ host: "127.0.0.1", port: 3000, role: "backup" }] })]), /backup backends need a backend to back up/);
    refuses(() => render([app({ backends: [{ host: "127.0.0.1", port: 3000, role: "primary; include /etc/passwd" as never }] })]), /backend role/);
  });

  it("does not depend on the order apps come in", () => {
    const apps = base.state.apps;
    assert.equal(render([...apps].reverse(), {}, base.state.domain), render(apps, {}, base.state.domain));
  });

  it("refuses any name that could carry nginx syntax", () => {
    for (const name of ["web;", "Web", "we b", "web}", "web\n", "", "-web", "web-", "a..b", "$host", "web.", "x".repeat(64), "é"]) {
      refuses(() => render([app({ name })]), /app name/);
      refuses(() => render([app({ hostnames: [name] })]), /hostname/);
    }
    refuses(() => render([app({})], {}, "local host"), /domain/);
    refuses(() => render([app({})], {}, "localhost;"), /domain/);
  });

  it("refuses backends that are not IP addresses and ports", () => {
    for (const host of ["localhost", "127.0.0.1; include /etc/passwd", "256.0.0.1", "::1", "[::1]x", ""]) {
      refuses(() => render([app({ backends: [{ host, port: 3000 }] })]), /backend host/);
    }
    for (const port of [0, 65536, 3.5, -1, Number.NaN]) refuses(() => render([app({ backends: [{ host: "127.0.0.1", port }] })]), /backend port/);
  });

  it("refuses access log paths that are relative or carry quotes, variables or separators", () => {
    for (const accessLog of ["web.log", "/srv/$host.log", '/srv/we"b.log', "/srv/web.log;", "/srv/{web}.log", "/srv/web\n.log", "/srv/web\\.log", "/srv/logs/"]) {
      refuses(() => render([app({ accessLog })]), /access log/);
    }
    assert.match(render([app({ accessLog: "/srv/My Apps/web.log" })]), /access_log "\/srv\/My Apps\/web\.log" quai;/);
  });

  it("refuses a hostname claimed twice, and the same app twice", () => {
    refuses(() => render([app({ hostnames: ["example.fr"] }), app({ name: "other", hostnames: ["example.fr"] })]), /example\.fr is claimed by both web and other/);
    refuses(() => render([app({}), app({ name: "other", hostnames: ["web.localhost"] })]), /web\.localhost/);
    refuses(() => render([app({}), app({})]), /app web appears twice/);
  });

  it("refuses settings out of range", () => {
    refuses(() => render([], { workers: 0 }), /worker count/);
    refuses(() => render([], { generation: -1 }), /generation/);
    refuses(() => render([], { user: { user: "nobody;", group: "nogroup" } }), /worker user/);
    refuses(() => render([], { tempDir: "temp" }), /temp dir/);
    refuses(() => render([], { listen: { host: "example.org", port: 80 } }), /listen host/);
  });

  it("sizes the server-name hash for many apps", () => {
    const apps = Array.from({ length: 1000 }, (_, i) => app({ name: `app-${i}`, hostnames: [`www.app-${i}.example.fr`], accessLog: `/srv/app-${i}.log` }));
    const conf = render(apps);
    assert.match(conf, /server_names_hash_max_size 4096;/);
    assert.equal(conf.match(/^ {2}upstream /gm)?.length, 1000);
  });

  it("has one error page per status the router answers itself", () => {
    const pages = errorPages();
    assert.match(pages["404.html"], /No app at this address/);
    assert.match(pages["503.html"], /No running web container/);
    assert.match(pages["502.html"], /did not answer/);
  });
});
