import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { QuaiError } from "../core/errors.ts";
import { escapeHtml, maintenancePageHtml, normaliseNetwork } from "./service.ts";
import { renderNginxConf } from "../router/render.ts";
import { RouterError } from "../router/errors.ts";

describe("maintenance", () => {
  it("escapes the message: text, never markup", () => {
    assert.equal(escapeHtml(`<img src=x onerror="alert('1')">&`), "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;");
    const page = maintenancePageHtml("<b>bold</b>", new Date("2026-12-01T13:00:00Z"));
    assert.match(page, /&lt;b&gt;bold&lt;\/b&gt;/);
    assert.match(page, /1 décembre 2026 à 14:00 \(Europe\/Paris\)/);
  });

  const settings = { prefix: "/srv/r", listen: { host: "127.0.0.1", port: 8080 }, statusPort: 8081, workers: 1, generation: 1, errorPagesDir: "/srv/r/html", pidFile: "/srv/r/pid", errorLog: "/srv/r/error.log", accessLog: "/srv/r/access.log", tempDir: "/srv/r/tmp" };
  const app = (maintenance: object) => ({ domain: "localhost", apps: [{ name: "web", hostnames: [], backends: [], accessLog: "/srv/web.log", maintenance: { html: "", allow: [], bypassToken: "a".repeat(32), retryAfter: 60, ...maintenance } }] });

  it("reads addresses and networks, and refuses anything else", () => {
    assert.equal(normaliseNetwork("192.0.2.10"), "192.0.2.10/32");
    assert.equal(normaliseNetwork(" 10.0.0.0/8 "), "10.0.0.0/8");
    assert.equal(normaliseNetwork("2001:DB8::/32"), "2001:db8::/32");
    // Written the way the router reads them: a leading zero in the prefix length goes.
    assert.equal(normaliseNetwork("1.2.3.0/024"), "1.2.3.0/24");
    for (const bad of ["", "example.org", "1.2.3.4/33", "1.2.3.4/8/8", "999.1.1.1", "1.2.3.4/x", "1.2.3.4; deny all", "::1/129", "fe80::1%eth0", "::ffff:1.2.3.4"]) {
      assert.throws(() => normaliseNetwork(bad), (err: unknown) => err instanceof QuaiError && err.code === "maintenance_invalid", bad);
    }
    // Whatever it takes, the router takes too: one it refused would stop every app's routing.
    for (const good of ["1.2.3.4/08", "10.0.0.0/8", "2001:db8::1", "::/0", "0.0.0.0/0"]) {
      const network = normaliseNetwork(good);
      assert.doesNotThrow(() => renderNginxConf(app({ allow: [network] }) as never, settings), good);
    }
  });

  it("the router refuses a maintenance state that could smuggle nginx syntax", () => {
    const refuses = (m: object, pattern: RegExp) => assert.throws(() => renderNginxConf(app(m) as never, settings), (err: unknown) => err instanceof RouterError && pattern.test(err.message));
    refuses({ bypassToken: `${"a".repeat(32)}"; return 200;` }, /bypass token/);
    refuses({ bypassToken: "short" }, /bypass token/);
    refuses({ allow: ["1.2.3.4/32 1; } include /etc/passwd; {"] }, /CIDR/);
    refuses({ allow: ["example.org"] }, /CIDR/);
    refuses({ retryAfter: 0 }, /Retry-After/);
    assert.match(renderNginxConf(app({ allow: ["192.0.2.0/24"] }) as never, settings), /192\.0\.2\.0\/24 1;/);
  });
});
