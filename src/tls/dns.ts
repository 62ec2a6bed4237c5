// Whether a domain points at this platform, asked before any ACME order. A CA validates HTTP-01 at
// the addresses public DNS gives for the name, so an order for a name that resolves elsewhere can
// only fail, and failed validations count against the CA's rate limits.
import { Resolver } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";

/** Resolves names to addresses: node's `dns/promises` Resolver fits; tests pass a stub. */
export interface DnsResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

/**
 * A resolver asking `servers` ("192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53"), or the
 * system's (/etc/resolv.conf) when none are given. Deliberately not `dns.lookup`: that also reads
 * /etc/hosts, which the CA never sees.
 */
export function dnsResolver(servers?: string[]): DnsResolver {
  // A few seconds at most: the check runs in the issuer's one-at-a-time queue.
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers(servers);
  return resolver;
}

/** One address or network (CIDR) of `entries`, parsed; undefined when it is neither. */
function parseEntry(entry: string): { address: string; family: "ipv4" | "ipv6"; prefix: number | undefined } | undefined {
  const [address = "", prefixText, extra] = entry.trim().split("/");
  const v = isIP(address);
  if (v === 0 || extra !== undefined || address.includes("%")) return undefined;
  const family = v === 4 ? "ipv4" : "ipv6";
  if (prefixText === undefined) return { address, family, prefix: undefined };
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > (v === 4 ? 32 : 128)) return undefined;
  return { address, family, prefix };
}

/**
 * The platform's addresses: single IPs and networks in CIDR form, IPv4 and IPv6. An IPv4-mapped
 * IPv6 address (`::ffff:192.0.2.1`) matches the IPv4 entries and the other way round, as a
 * dual-stack socket would see it.
 */
export class AddressSet {
  /** The entries as given (for messages). */
  readonly entries: string[];
  private readonly list = new BlockList();

  /** Throws an Error naming the first entry that is neither an IP address nor a network. */
  constructor(entries: string[]) {
    this.entries = [];
    for (const raw of entries) {
      const e = parseEntry(raw);
      if (!e) throw new Error(`${JSON.stringify(raw)} is not an IP address or a network in CIDR form (192.0.2.0/24, 2001:db8::/32)`);
      if (e.prefix === undefined) this.list.addAddress(e.address, e.family);
      else this.list.addSubnet(e.address, e.prefix, e.family);
      this.entries.push(raw.trim());
    }
  }

  /** Whether `address` (IPv4 or IPv6, zone index allowed) is one of the platform's. */
  has(address: string): boolean {
    const plain = address.replace(/%.*$/, "");
    const v = isIP(plain);
    return v !== 0 && this.list.check(plain, v === 4 ? "ipv4" : "ipv6");
  }
}

/**
 * What the platform is reached at when nobody said (`QUAI_PUBLIC_IPS` unset): every address of
 * this machine's interfaces, and loopback. Behind NAT or a load balancer the public address is on
 * no interface: that is what the setting is for.
 */
export function defaultPublicAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  const out = new Set<string>(["127.0.0.0/8", "::1"]);
  for (const list of Object.values(interfaces)) for (const i of list ?? []) out.add(i.address.replace(/%.*$/, ""));
  return [...out];
}

/** What a domain resolves to, and whether that is the platform. */
export interface DnsCheck {
  ok: boolean;
  /** Every A and AAAA address found, sorted. */
  addresses: string[];
  /** The addresses that are not the platform's. */
  foreign: string[];
  /** Why it is not ok, in words for the app's owner (stable for the same situation: events compare it). */
  reason: string | undefined;
}

// The name exists without records of that type, or does not exist: no addresses, not a failure.
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);

/**
 * Resolves `name` (A and AAAA) and compares with `platform`. Every address must be the
 * platform's: a CA may validate at any of them (Let's Encrypt tries IPv6 first), so one foreign
 * record is enough for an order to fail. A lookup that fails (timeout, SERVFAIL) is not ok either.
 */
export async function checkDomainDns(name: string, resolver: DnsResolver, platform: AddressSet): Promise<DnsCheck> {
  const answers = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const addresses: string[] = [];
  const failures: string[] = [];
  for (const a of answers) {
    if (a.status === "fulfilled") addresses.push(...a.value);
    else {
      const code = (a.reason as NodeJS.ErrnoException).code ?? "";
      if (!NO_RECORDS.has(code)) failures.push(code || String((a.reason as Error).message ?? a.reason));
    }
  }
  addresses.sort();
  const foreign = addresses.filter((x) => !platform.has(x));
  const expected = `expected ${platform.entries.join(", ")}`;
  let reason: string | undefined;
  if (failures.length > 0) reason = `DNS lookup of ${name} failed (${[...new Set(failures)].join(", ")}); ${expected}`;
  else if (addresses.length === 0) reason = `${name} has no A or AAAA record; ${expected}`;
  else if (foreign.length > 0) reason = `${name} resolves to ${addresses.join(", ")}, not to this platform (${foreign.join(", ")} ${foreign.length > 1 ? "are" : "is"} not its own); ${expected}`;
  return { ok: reason === undefined, addresses, foreign, reason };
}
