"""The acceptance test of coached calls, over real WebSocket legs on a served app.

The customer says (audio) that the price is too high: within 2 s of the end of that audio the rep's
socket gets a hint card, and the rep's audio carries the AI coach's whisper (the tone synthesizer's
440 Hz), measured; the customer's audio carries none of it, measured (< -60 dBFS at 440 Hz); a coach
listening hears both sides. The same with a human coach whispering (its own tone): the rep hears it, the
customer does not, and once a supervisor switches it to barge, the customer hears it too.
"""

from __future__ import annotations

from pathlib import Path

from parley.engine.events import now
from tests.coaching.kit import (
    COACH_HZ,
    CUSTOMER_HZ,
    MS_PER_CHAR,
    REP_HZ,
    WHISPER_HZ,
    api,
    invite,
    join,
    open_room,
    room_server,
    tone,
)
from tests.server.conftest import talking

LEAK_DBFS = -60.0
HEARD_DBFS = -35.0
"""The whisper is a 0.1 full-scale tone (-23 dBFS); speech tones here are 0.3 (-13.5 dBFS)."""
OBJECTION = "honestly the price is too high for us"


async def test_the_ai_coach_whispers_a_hint_to_the_rep_alone(tmp_path: Path) -> None:
    lines = [OBJECTION, "I hear you, let me show what you get for it"]
    async with room_server(tmp_path, lines) as served, api(served) as http:
        room = await open_room(http)
        customer, customer_ear = await join(await invite(http, room["id"], "customer"))
        rep, rep_ear = await join(await invite(http, room["id"], "rep"))
        coach, coach_ear = await join(await invite(http, room["id"], "coach"))  # listens by default
        async with talking(customer) as customer_mic, talking(rep) as rep_mic:
            said_from = now()
            await customer_mic.say(tone(1.0, CUSTOMER_HZ))
            said_until = now()
            hint = await rep.wait_for("hint", 2.0, trigger="price_objection")
            assert hint["_arrival"] - said_until <= 2.0, "the hint card came too late"
            assert hint["text"] and hint["source"] == "rule" and hint["whisper"]

            # The whisper: the hint's text spoken by the tone voice into the AI coach's leg.
            whisper_s = len(hint["text"]) * MS_PER_CHAR / 1000
            start, end = hint["_arrival"], hint["_arrival"] + whisper_s + 0.3
            await rep_ear.until(end)
            await customer_ear.until(end)
            assert rep_ear.heard(start, end, WHISPER_HZ) > HEARD_DBFS, "the rep did not hear the whisper"
            assert customer_ear.level(start - 0.5, end, WHISPER_HZ) < LEAK_DBFS, "the whisper leaked"

            answered_from = now()
            await rep_mic.say(tone(1.0, REP_HZ))
            answered_until = now()
            await coach.wait_for("utterance", 5, role="rep")
            await coach_ear.until(answered_until)

        # A coach who listens hears both sides (their middles: the room's 40 ms prebuffer aside).
        assert coach_ear.heard(said_from + 0.3, said_until - 0.3, CUSTOMER_HZ) > HEARD_DBFS
        assert coach_ear.heard(answered_from + 0.3, answered_until - 0.3, REP_HZ) > HEARD_DBFS
        assert coach_ear.level(start, end, WHISPER_HZ) < LEAK_DBFS, "a whisper is for the rep only"
        # Only reps and coaches get coaching on their channel.
        assert customer.of_type("hint") == [] and customer.of_type("metrics") == []
        assert [m["trigger"] for m in coach.of_type("hint")] == ["price_objection"]
        lines_seen = [(m["role"], m["text"]) for m in rep.of_type("utterance")]
        assert lines_seen == [("customer", lines[0]), ("rep", lines[1])]
        for client in (customer, rep, coach):
            await client.close()


async def test_a_human_coach_whispers_to_the_rep_then_barges_in(tmp_path: Path) -> None:
    lines = ["ask them about the pilot", "we can start with a pilot"]
    async with room_server(tmp_path, lines) as served, api(served) as http:
        room = await open_room(http, enabled=False)
        assert room["participants"] == [], "no AI coach without coaching"
        customer, customer_ear = await join(await invite(http, room["id"], "customer"))
        rep, rep_ear = await join(await invite(http, room["id"], "rep"))
        invitation = await invite(http, room["id"], "coach", mode="whisper")
        mark = len(customer.messages)
        coach, _ = await join(invitation)
        seen = await customer.wait_for("participants", 5, since=mark)
        assert invitation["participant_id"] not in [p["id"] for p in seen["participants"]], (
            "a whispering coach is not shown to the customer"
        )

        async with talking(coach) as coach_mic:
            start = now()
            await coach_mic.say(tone(1.0, COACH_HZ))
            end = now()
            await rep_ear.until(end)
            await customer_ear.until(end)
            assert rep_ear.heard(start + 0.2, end - 0.2, COACH_HZ) > HEARD_DBFS, "the rep missed the whisper"
            assert customer_ear.level(start, end + 0.2, COACH_HZ) < LEAK_DBFS, "the whisper leaked"

            switched = await http.patch(
                f"/v1/rooms/{room['id']}/participants/{invitation['participant_id']}", json={"mode": "barge"}
            )
            assert switched.status_code == 200 and switched.json()["mode"] == "barge"
            told = await coach.wait_for("mode", 5)
            assert (told["old"], told["new"]) == ("whisper", "barge")

            start = now()
            await coach_mic.say(tone(1.0, COACH_HZ))
            end = now()
            await customer_ear.until(end)
            assert customer_ear.heard(start + 0.2, end - 0.2, COACH_HZ) > HEARD_DBFS, (
                "the barge was not heard"
            )
        assert customer.of_type("mode") == [], "a customer is not told how others are heard"
        shown = customer.of_type("participants")[-1]["participants"]
        assert invitation["participant_id"] in [p["id"] for p in shown], "a coach who barges in is seen"
        for client in (customer, rep, coach):
            await client.close()
