"""Audience behaviours of the ``audience-v2`` corpus mix, each written from how the network, the player or the
specification documents itself (the sources are named with each kind), not from what the detection policy expects.

Legit viewers:

- ``inflight``: in-flight Wi-Fi. The aircraft reaches the internet through the provider's ground network (air to
  ground or satellite: Intelsat, formerly Gogo Commercial Aviation; Viasat; Panasonic Avionics), so an address
  geolocates to the provider's gateway country, not to where the passenger boarded; passengers share it behind
  the aircraft's NAT; per-passenger throughput is 1-3 Mbit/s (providers throttle streaming). Half of these viewers
  start on their phone's carrier at the gate. One provider of three is one the shipped registry does not list.
- ``relay_rotation``: iCloud Private Relay (Apple, "Prepare your network or web server for iCloud Private Relay";
  Sattler et al., IMC 2022): Safari's traffic leaves through egress proxies of partner networks (Akamai AS36183,
  Cloudflare AS13335, Fastly AS54113) with addresses that keep the user's region and change as connections are
  re-established (every few minutes here), and parallel connections may each use their own egress.
- ``gateway_failover``: a corporate secure web gateway (Zscaler, Netskope). Traffic leaves from the nearest
  gateway data centre, often in a neighbouring country, spread over its egress addresses; when that node is
  unavailable the client fails over to another data centre, in another country, within seconds.
- ``satellite``: Starlink residential. IPv4 behind carrier-grade NAT plus an IPv6 prefix; Starlink's geofeed places
  addresses at the point of presence the dish is homed to, which for many customers is in another country, and a
  dish can be re-homed to another PoP mid-session.
- ``roaming``: a phone abroad. Roaming data is routed home by default (GSMA home routing), so its address is the
  home carrier's, in the home country; then the hotel's Wi-Fi, in the country the viewer is really in.
- ``speed_watcher``: a VOD viewer who chose a faster playback speed (players offer 1.25x-2x). Players that send
  CMCD report it as ``pr`` (CTA-5004: sent when not 1); the iOS player (AVPlayer) sends no CMCD.

Pirates:

- ``slow_ripper``: a VOD title pulled from the first segment at 1.3-1.8x real time, one rendition (the top one, no
  adaptation), from a home or mobile line, by a download tool or with a browser's user agent, without CMCD: a
  download limited by the line, not by a buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AUDIENCE_KINDS", "AUDIENCE_SHARES", "AudienceBehaviours", "Kind"]


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # "legit" or "pirate"
    share: float  # fraction of all sessions in the generator-v1 mix (audience kinds: 0 there)
    description: str


AUDIENCE_KINDS: tuple[Kind, ...] = (
    Kind("inflight", "legit", 0.0, "in-flight Wi-Fi: the provider's gateway country, one address at a time"),
    Kind("relay_rotation", "legit", 0.0, "iCloud Private Relay: egress rotating through partner networks, in parallel"),
    Kind("gateway_failover", "legit", 0.0, "secure web gateway in a neighbouring country, failing over to another"),
    Kind("satellite", "legit", 0.0, "Starlink: CGNAT and IPv6, geolocated at a point of presence abroad"),
    Kind("roaming", "legit", 0.0, "a phone abroad: home-routed roaming data, then the hotel's Wi-Fi"),
    Kind("speed_watcher", "legit", 0.0, "VOD at 1.25-2x playback speed (CMCD players report pr)"),
    Kind("slow_ripper", "pirate", 0.0, "a VOD title pulled at 1.3-1.8x, one rendition, home or mobile line"),
)
#: The audience kinds' shares in the ``audience-v2`` mix (added to generator-v1's).
AUDIENCE_SHARES: dict[str, float] = {
    "inflight": 0.015,
    "relay_rotation": 0.03,
    "gateway_failover": 0.015,
    "satellite": 0.01,
    "roaming": 0.01,
    "speed_watcher": 0.005,
    "slow_ripper": 0.004,
}

#: In-flight providers (ASN, gateway country): two the shipped registry lists, one it does not (ASN for
#: documentation, RFC 5398), so that a provider nobody listed is in the corpus too.
INFLIGHT_PROVIDERS: tuple[tuple[int, str], ...] = ((22351, "US"), (7155, "US"), (64497, "GB"))
#: iCloud Private Relay egress partners (Apple's egress list).
RELAY_PARTNERS: tuple[int, ...] = (36183, 13335, 54113)
#: Secure web gateways: Zscaler, Netskope, and a company's own gateway the registry does not list.
GATEWAYS: tuple[int, ...] = (53813, 55256, 64498)
#: Where gateway and satellite operators run points of presence (the hubs a neighbour is served from).
HUBS: tuple[str, ...] = ("DE", "NL", "GB", "FR", "US")
STARLINK = 14593
#: Countries whose visitors roam into the market, with each one's mobile network (home-routed).
ROAMERS: tuple[tuple[str, int], ...] = (("US", 21928), ("US", 20057), ("GB", 12576), ("FR", 51207), ("BR", 26615),
                                        ("IN", 55836))  # fmt: skip


class AudienceBehaviours:
    """The audience kinds as builder methods (``k_<kind>``), for the corpus generator's builder, which provides
    ``rng``, ``w`` (the world: addresses, user agents, content), ``times``, ``content``, ``device`` and ``player``."""

    rng: np.random.Generator
    w: Any
    span: tuple[float, float]

    if TYPE_CHECKING:

        def player(self, session: int, t0: float, t1: float, content: int, slots: list[int], device: str,
                   **kwargs: Any) -> None: ...  # fmt: skip
        def times(self, minimum: float) -> tuple[float, float]: ...
        def content(self, live_share: float = 0.7) -> int: ...

    def _pick(self, options: tuple[Any, ...] | list[Any]) -> Any:
        return options[int(self.rng.integers(0, len(options)))]

    def _elsewhere(self, country: str) -> str:
        """A hub other than ``country``."""
        return self._pick([h for h in HUBS if h != country])

    def k_inflight(self, s: int) -> None:
        rng = self.rng
        home = self.w.country()
        asn, gateway_country = self._pick(INFLIGHT_PROVIDERS)
        device = str(rng.choice(["ios_app", "android_app", "desktop"], p=[0.4, 0.3, 0.3]))
        plane = self.w.address(asn, gateway_country)
        slots, cuts = [plane], None
        if rng.random() < 0.5:  # at the gate on the phone's carrier, then the plane's Wi-Fi
            slots = [self.w.address(self.w.asn(home, mobile=True), home), plane]
            cuts = [float(rng.uniform(0.2, 0.6))]
        elif rng.random() < 0.3:  # a beam or satellite handover: another address of the provider
            slots.append(self.w.address(asn, gateway_country))
            cuts = [float(rng.uniform(0.3, 0.8))]
        t0, t1 = self.times(180)
        self.player(s, t0, t1, self.content(0.5), slots, device, cuts=cuts,
                    bandwidth=float(rng.uniform(0.12e6, 0.4e6)))  # fmt: skip

    def k_relay_rotation(self, s: int) -> None:
        rng = self.rng
        country = self.w.country()
        safari = self.w.user_agent("ios_player")  # Safari plays HLS with the system player
        t0, t1 = self.times(180)
        content = self.content()
        if rng.random() < 0.3:  # parallel connections, each on its own egress
            partners = rng.permutation(len(RELAY_PARTNERS))[: int(rng.integers(2, 4))]
            egress = [self.w.address(RELAY_PARTNERS[int(i)], country, v6=rng.random() < 0.5) for i in partners]
            self.player(s, t0, t1, content, egress, "ios_app", ua=safari, mode=1, block=int(rng.integers(1, 3)),
                        cmcd=False)  # fmt: skip
            return
        changes = min(8, max(1, int((t1 - t0) / float(rng.uniform(120, 360)))))  # a new egress every few minutes
        egress = [self.w.address(self._pick(RELAY_PARTNERS), country, v6=rng.random() < 0.5) for _ in range(changes + 1)]
        cuts = sorted(float(x) for x in rng.uniform(0.05, 0.95, changes))
        self.player(s, t0, t1, content, egress, "ios_app", ua=safari, cuts=cuts, cmcd=False)

    def k_gateway_failover(self, s: int) -> None:
        rng = self.rng
        country = self.w.country()
        asn = self._pick(GATEWAYS)
        node = country if rng.random() < 0.5 else self._elsewhere(country)
        desktop = self.w.user_agent("desktop")
        t0, t1 = self.times(150)
        content = self.w.live()  # live sport at work

        def egress(where: str) -> list[int]:
            first = self.w.address(asn, where)
            return [first] + [self.w.address(asn, where, near=first) for _ in range(int(rng.integers(1, 4)))]

        if rng.random() < 0.25:  # the node fails over to another data centre, in another country
            switch = t0 + float(rng.uniform(0.3, 0.7)) * (t1 - t0)
            self.player(s, t0, switch, content, egress(node), "desktop", ua=desktop, mode=2)
            self.player(s, switch + float(rng.uniform(2, 10)), t1, content, egress(self._elsewhere(node)), "desktop",
                        ua=desktop, mode=2)  # fmt: skip
        else:
            self.player(s, t0, t1, content, egress(node), "desktop", ua=desktop, mode=2)

    def k_satellite(self, s: int) -> None:
        rng = self.rng
        country = self.w.country()
        pop = country if rng.random() < 0.6 else self._elsewhere(country)
        slots = [self.w.cgnat_address(STARLINK, pop, pool=12), self.w.address(STARLINK, pop, v6=True)]
        device = str(rng.choice(["tv", "desktop", "android_app", "cast"], p=[0.4, 0.3, 0.2, 0.1]))
        t0, t1 = self.times(150)
        content = self.content()
        if rng.random() < 0.2:  # the dish is re-homed to another point of presence
            switch = t0 + float(rng.uniform(0.3, 0.7)) * (t1 - t0)
            ua = self.w.user_agent(device)
            self.player(s, t0, switch, content, slots, device, ua=ua, mode=1, block=int(rng.integers(2, 6)))
            other = self._elsewhere(pop)
            self.player(s, switch + float(rng.uniform(5, 30)), t1, content,
                        [self.w.address(STARLINK, other), self.w.address(STARLINK, other, v6=True)], device, ua=ua,
                        mode=1, block=int(rng.integers(2, 6)))  # fmt: skip
        else:
            self.player(s, t0, t1, content, slots, device, mode=1, block=int(rng.integers(2, 6)))

    def k_roaming(self, s: int) -> None:
        rng = self.rng
        home_country, carrier = self._pick(ROAMERS)
        here = self.w.country()
        if here == home_country:
            here = self._elsewhere(home_country)
        slots = [self.w.address(carrier, home_country), self.w.address(self.w.asn(here), here)]
        device = "ios_app" if rng.random() < 0.5 else "android_app"
        t0, t1 = self.times(150)
        self.player(s, t0, t1, self.content(), slots, device, cuts=[float(rng.uniform(0.2, 0.8))])

    def k_speed_watcher(self, s: int) -> None:
        rng = self.rng
        country = self.w.country()
        ip = self.w.address(self.w.asn(country), country)
        device = str(rng.choice(["desktop", "android_app", "ios_app", "tv"], p=[0.5, 0.2, 0.2, 0.1]))
        rate = float(rng.choice([1.25, 1.5, 1.75, 2.0], p=[0.3, 0.4, 0.1, 0.2]))
        t0, t1 = self.times(240)
        self.player(s, t0, t1, self.w.vod(), [ip], device, speed=rate, rate=rate)

    def k_slow_ripper(self, s: int) -> None:
        rng = self.rng
        country = self.w.country()
        asn = self.w.asn(country, mobile=rng.random() < 0.3)
        ip = self.w.address(asn, country)
        tool = rng.random() < 0.4
        t0, t1 = self.times(300)
        self.player(s, t0, t1, self.w.vod(), [ip], "tool" if tool else "desktop", speed=float(rng.uniform(1.3, 1.8)), rendition=0, abr=0.0,
                    cmcd=False, bandwidth=float(rng.uniform(1.2e6, 2.0e6)))  # fmt: skip
