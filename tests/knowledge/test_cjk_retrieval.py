"""Documents in languages written without spaces (Chinese, Japanese) are retrieved like English ones.

A run of Chinese characters used to be one "word", so a question never shared a word with a passage,
and ``。`` never ended a sentence, so a whole FAQ became a few passages too long for the prompt."""

from __future__ import annotations

import math

from parley.engine.context import ConversationContext
from parley.engine.knowledge import MAX_CHARS, MAX_WORDS, KnowledgeIndex, Passage, chunk_text

ZH_FAQ = """微笑牙科诊所欢迎您。我们是一家有二十年历史的社区诊所，服务周边居民。

营业时间是周一至周五上午九点到下午六点，周六上午九点到中午十二点。周日和法定节假日休息。

洗牙的费用是三百元，包括抛光和口腔检查。洗牙大约需要四十五分钟。

补牙每颗五百元起，拔智齿八百元。种植牙的价格请在面诊后咨询医生。

您可以打电话或在微信上预约。如需取消预约，请提前二十四小时告诉我们。

诊所在人民路八号二楼，地铁二号线人民广场站三号出口步行五分钟。大楼后面有免费停车场。

我们接受大部分商业保险，但暂时不能用医保卡直接结算。

儿童第一次看牙建议在三岁左右。我们的儿科医生很有耐心，诊室里还有玩具和绘本。
"""

JA_FAQ = """スマイル歯科は駅前にある地域の歯医者です。院長は二十年の経験があります。

診療時間は月曜日から金曜日の午前9時から午後6時まで、土曜日は午前9時から12時までです。日曜日と祝日は休診です。

歯のクリーニングの料金は8,000円です。所要時間は約45分です。

虫歯の治療は保険適用で3,000円程度からです。ホワイトニングは1回20,000円です。

ご予約はお電話またはウェブサイトから承ります。キャンセルの場合は前日までにご連絡ください。

当院は駅前ビルの3階にあります。駐車場はビルの裏に5台分ございます。

お子様の初めての歯科検診は3歳ごろがおすすめです。キッズスペースもございます。
"""


def _estimated_by_characters(text: str) -> int:
    """The token count of a remote model (``OpenAICompatLLM.count_tokens``): 4 characters a token."""
    return math.ceil(len(text) / 4)


def _answers(index: KnowledgeIndex, question: str, answer: str) -> list[Passage]:
    """The passages ``question`` retrieves (within the default budget), the first one with ``answer``."""
    found = index.search(question, 300, count_tokens=_estimated_by_characters)
    assert found, f"{question!r} retrieved nothing"
    assert answer in found[0].text, (question, [p.text for p in found])
    return found


def test_a_chinese_question_retrieves_the_passage_with_its_answer_and_no_other() -> None:
    index = KnowledgeIndex.from_documents([("faq.txt", ZH_FAQ)])
    assert len(index) >= 3, "the FAQ is cut into passages, so the right one must be picked"
    for question, answer in {
        "洗牙费用是多少": "三百元",
        "洗牙多少钱？": "三百元",
        "请问周六营业时间是几点？": "中午十二点",
        "附近有停车场吗": "免费停车场",
        "补牙多少钱": "五百元",
        "能用医保卡吗": "医保卡",
    }.items():
        found = _answers(index, question, answer)
        assert len(found) == 1, (question, [p.text for p in found])
    for said in ("好的", "嗯，是的", "好的，谢谢"):
        assert index.search(said, 300) == [], "small talk retrieves nothing"


def test_a_japanese_question_retrieves_the_passage_with_its_answer_and_no_other() -> None:
    index = KnowledgeIndex.from_documents([("faq.txt", JA_FAQ)])
    assert len(index) >= 3
    for question, answer in {
        "クリーニングの料金はいくらですか": "8,000円",
        "料金": "8,000円",
        "駐車場はありますか": "5台分",
        "日曜日は休みですか": "休診",
        "予約をキャンセルしたい": "前日まで",
    }.items():
        found = _answers(index, question, answer)
        assert len(found) == 1, (question, [p.text for p in found])
    _answers(index, "診療時間は", "午前9時")
    for said in ("はい、そうです", "ありがとうございます"):
        assert index.search(said, 300) == [], "small talk retrieves nothing"


def test_a_long_chinese_document_is_cut_into_passages_the_retrieval_budget_can_hold() -> None:
    """200 FAQ paragraphs used to become 3 passages of ~3,900 characters: none fit a prompt's budget."""
    topics = ("口腔检查", "牙齿矫正", "儿童看牙", "种植牙", "牙齿美白")
    filler = [
        f"第{n}条：{topics[n % 5]}由专业团队负责，详情请咨询前台。如有疑问，欢迎随时联系我们。"
        for n in range(200)
    ]
    answer = "洗牙的费用是三百元，包括抛光和口腔检查。"
    document = "\n\n".join([*filler[:120], answer, *filler[120:]])
    passages = chunk_text(document, "faq.txt")
    assert len(passages) > 40
    assert all(p.words <= MAX_WORDS and len(p.text) <= MAX_CHARS for p in passages)
    assert all(p.text.endswith("。") for p in passages), "passages end where sentences do"
    assert all(p.text in document.replace("\n\n", "") for p in passages), "no spaces put between sentences"
    # The budget the session gives retrieval: min(400, context_token_budget / 4), with the default 1200.
    for count in (_estimated_by_characters, lambda text: len(text)):
        context = ConversationContext("Answer briefly.", [], 1200, count, documents=KnowledgeIndex(passages))
        found = context.retrieve("洗牙费用是多少")
        assert found and answer in found[0].text
        assert sum(count(p.text) for p in found) <= context.retrieval_budget


def test_a_run_of_text_without_punctuation_is_cut_rather_than_kept_whole() -> None:
    run_on = "洗牙的费用是三百元" * 150
    passages = chunk_text(run_on)
    assert "".join(p.text for p in passages) == run_on, "nothing is lost"
    assert max(p.words for p in passages) <= MAX_WORDS
    assert max(len(p.text) for p in passages) <= MAX_CHARS


def test_japanese_sentences_end_at_full_width_punctuation_and_quotes_stay_with_them() -> None:
    paragraph = "院長は「予約をお願いします。」と言いました。" + "駐車場はビルの裏にあります！" * 20
    passages = chunk_text(paragraph)
    assert len(passages) > 1
    assert passages[0].text.startswith("院長は「予約をお願いします。」と言いました。")
    assert all(p.text.endswith(("。", "！")) for p in passages)


def test_mixed_english_and_chinese_documents_answer_questions_in_either_language() -> None:
    document = """# Bright Smile Dental

## Wi-Fi
Guests can use the WiFi in the waiting room. 候诊室的WiFi密码是smile2024，欢迎使用。

## 价格
洗牙的费用是三百元。A cleaning costs 300 yuan.

## Opening hours
We are open Monday to Friday, 9 am to 6 pm. 周一至周五上午九点到下午六点营业。
"""
    index = KnowledgeIndex.from_documents([("faq.md", document)])
    assert len(index) == 3
    for question, answer in {
        "WiFi密码是什么？": "smile2024",
        "What is the WiFi password?": "smile2024",
        "洗牙多少钱": "三百元",
        "How much is a cleaning?": "300 yuan",
        "When are you open?": "Monday to Friday",
        "营业时间": "九点",
    }.items():
        found = index.search(question, 300, count_tokens=_estimated_by_characters)
        assert found and answer in found[0].text, question
        assert len(found) == 1, (question, [p.text for p in found])


def test_a_korean_question_finds_its_answer_despite_the_particles_on_its_words() -> None:
    """Korean has spaces, but "주차할" (to park) and "주차는" (parking, as topic) are different words."""
    passages = [
        Passage("진료 시간은 월요일부터 금요일까지 오전 9시부터 오후 6시까지입니다."),
        Passage("스케일링 가격은 5만 원입니다. 충치 치료는 보험이 적용됩니다."),
        Passage("주차는 건물 뒤에 무료로 가능합니다."),
    ]
    index = KnowledgeIndex(passages)
    assert index.search("주차할 수 있나요?", 300) == [passages[2]]
    assert index.search("스케일링 가격이 얼마예요?", 300) == [passages[1]]
